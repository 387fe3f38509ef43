"""The corpus' model specs: small configs of real diffusers 0.31 classes, their ONNX interfaces and
their seeded inputs.

Configs start from diffusers' own tests at v0.31.0 (tests/models/..., tests/pipelines/...:
get_dummy_components / prepare_init_args_and_inputs_for_common) and are widened/deepened so that
each model keeps its family's block layout (levels, blocks per level, which levels attend, joint /
single streams, context_pre_only, ...) at a few MB. Comments give the real checkpoint's value.

A spec's `forward` maps the flat ONNX inputs (fixed names) onto the diffusers forward signature; the
exporter binds it as the model's own forward so that ONNX node names keep the module paths
(`/down_blocks.0/attentions.0/...`) that real exports have.
"""
import torch

UNET_SD15 = dict(
    sample_size=64,  # 512 px
    in_channels=4,
    out_channels=4,
    layers_per_block=2,  # real: 2
    block_out_channels=(8, 16, 16, 16),  # real: 320, 640, 1280, 1280
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,  # real: 768 (CLIP ViT-L)
    attention_head_dim=2,  # diffusers' name for the head count (head_dim 4/8/8); real: 8 (head_dim 40/80/160)
    norm_num_groups=8,  # real: 32
    use_linear_projection=False,  # SD 1.x: Conv2d 1x1 proj_in / proj_out
)

UNET_SD2 = dict(
    UNET_SD15,
    attention_head_dim=(1, 2, 2, 2),  # heads per level, head_dim 8 everywhere; real: 5,10,20,20 (head_dim 64)
    use_linear_projection=True,  # SD 2.x: Linear proj_in / proj_out
)

UNET_SDXL = dict(
    sample_size=128,  # 1024 px
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(16, 16, 24),  # real: 320, 640, 1280
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 2),  # real: 1, 2, 10
    attention_head_dim=(2, 2, 3),  # heads per level, head_dim 8; real: 5, 10, 20 (head_dim 64)
    cross_attention_dim=64,  # real: 2048
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,  # real: 256
    projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 time ids x 8 + pooled text 32; real 2816
    norm_num_groups=8,
)
SDXL_POOLED = 32  # real: 1280

SD3 = dict(
    sample_size=64,  # real: 128
    patch_size=2,
    in_channels=16,
    out_channels=16,
    num_layers=5,  # real: 24; the last block is context_pre_only
    attention_head_dim=16,  # real: 64
    num_attention_heads=3,  # real: 24
    joint_attention_dim=64,  # real: 4096
    caption_projection_dim=48,  # = heads * head_dim (real: 1536)
    pooled_projection_dim=32,  # real: 2048
    pos_embed_max_size=32,  # real: 192; latents up to 64x64 fit
)
SD35 = dict(SD3, qk_norm="rms_norm", dual_attention_layers=(0, 1, 2))  # SD3.5-medium: layers 0..12 of 24

FLUX = dict(
    patch_size=1,
    in_channels=64,  # 16 latent channels packed 2x2 (real: 64)
    num_layers=2,  # double-stream blocks, real: 19
    num_single_layers=4,  # single-stream blocks, real: 38
    attention_head_dim=24,  # real: 128
    num_attention_heads=2,  # real: 24
    joint_attention_dim=32,  # real: 4096 (T5)
    pooled_projection_dim=32,  # real: 768 (CLIP)
    guidance_embeds=True,  # Flux-dev
    axes_dims_rope=(4, 10, 10),  # sums to head_dim; real: 16, 56, 56
)

PIXART = dict(
    sample_size=64,  # PixArt-alpha 512 px
    num_layers=4,  # real: 28
    patch_size=2,
    attention_head_dim=16,  # real: 72
    num_attention_heads=4,  # real: 16
    in_channels=4,
    out_channels=8,
    cross_attention_dim=64,  # = inner dim (real: 1152)
    caption_channels=48,  # real: 4096 (T5)
    attention_bias=True,
    activation_fn="gelu-approximate",
    num_embeds_ada_norm=1000,
    norm_type="ada_norm_single",
    norm_elementwise_affine=False,
    norm_eps=1e-6,
    use_additional_conditions=False,  # the 512 px model
)

DIT = dict(
    sample_size=32,  # DiT-XL/2 256 px
    num_layers=4,  # real: 28
    patch_size=2,
    attention_head_dim=16,  # real: 72
    num_attention_heads=2,  # real: 16
    in_channels=4,
    out_channels=8,
    num_embeds_ada_norm=1000,
    norm_type="ada_norm_zero",
    activation_fn="gelu-approximate",
    attention_bias=True,
)

FULL = {
    "sd15": dict(
        UNET_SD15,
        block_out_channels=(320, 640, 1280, 1280),
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    ),
    "sdxl": dict(
        UNET_SDXL,
        block_out_channels=(320, 640, 1280),
        transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20),
        cross_attention_dim=2048,
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
        norm_num_groups=32,
    ),
}
FULL_POOLED = {"sdxl": 1280}


# ---- forwards: flat ONNX inputs -> diffusers forward ------------------------------------------

def unet_forward(self, sample, timestep, encoder_hidden_states):
    return type(self).forward(self, sample, timestep, encoder_hidden_states, return_dict=False)[0]


def unet_xl_forward(self, sample, timestep, encoder_hidden_states, text_embeds, time_ids):
    cond = {"text_embeds": text_embeds, "time_ids": time_ids}
    return type(self).forward(
        self, sample, timestep, encoder_hidden_states, added_cond_kwargs=cond, return_dict=False
    )[0]


def sd3_forward(self, hidden_states, encoder_hidden_states, pooled_projections, timestep):
    return type(self).forward(
        self, hidden_states, encoder_hidden_states, pooled_projections, timestep, return_dict=False
    )[0]


def flux_forward(self, hidden_states, encoder_hidden_states, pooled_projections, timestep, img_ids, txt_ids, guidance):
    return type(self).forward(
        self,
        hidden_states,
        encoder_hidden_states,
        pooled_projections,
        timestep,
        img_ids,
        txt_ids,
        guidance,
        return_dict=False,
    )[0]


def pixart_forward(self, hidden_states, timestep, encoder_hidden_states):
    cond = {"resolution": None, "aspect_ratio": None}
    return type(self).forward(
        self, hidden_states, encoder_hidden_states, timestep, added_cond_kwargs=cond, return_dict=False
    )[0]


def dit_forward(self, hidden_states, timestep, class_labels):
    return type(self).forward(self, hidden_states, timestep, class_labels, return_dict=False)[0]


# ---- seeded inputs ----------------------------------------------------------------------------

def _randn(g, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def unet_inputs(g, batch, h, w, text, cross_dim):
    return {
        "sample": _randn(g, batch, 4, h, w),
        "timestep": torch.linspace(999.0, 250.0, batch),
        "encoder_hidden_states": _randn(g, batch, text, cross_dim),
    }


def unet_xl_inputs(g, batch, h, w, text, cross_dim, pooled):
    d = unet_inputs(g, batch, h, w, text, cross_dim)
    d["text_embeds"] = _randn(g, batch, pooled)
    # (orig h, orig w, crop top, crop left, target h, target w) in pixels
    ids = torch.tensor([h * 8, w * 8, 0, 0, h * 8, w * 8], dtype=torch.float32)
    d["time_ids"] = ids.repeat(batch, 1)
    return d


def sd3_inputs(g, batch, h, w, text, cfg):
    return {
        "hidden_states": _randn(g, batch, cfg["in_channels"], h, w),
        "encoder_hidden_states": _randn(g, batch, text, cfg["joint_attention_dim"]),
        "pooled_projections": _randn(g, batch, cfg["pooled_projection_dim"]),
        "timestep": torch.linspace(980.0, 500.0, batch),
    }


def flux_inputs(g, batch, h, w, text, cfg):
    """h, w: the latent (16-channel) size; Flux packs 2x2 latent patches into 64-channel tokens."""
    hp, wp = h // 2, w // 2
    img_ids = torch.zeros(hp, wp, 3)
    img_ids[..., 1] = torch.arange(hp)[:, None]
    img_ids[..., 2] = torch.arange(wp)[None, :]
    return {
        "hidden_states": _randn(g, batch, hp * wp, cfg["in_channels"]),
        "encoder_hidden_states": _randn(g, batch, text, cfg["joint_attention_dim"]),
        "pooled_projections": _randn(g, batch, cfg["pooled_projection_dim"]),
        "timestep": torch.linspace(0.9, 0.6, batch),  # the pipeline passes t / 1000
        "img_ids": img_ids.reshape(hp * wp, 3),
        "txt_ids": torch.zeros(text, 3),
        "guidance": torch.full((batch,), 3.5),
    }


def pixart_inputs(g, batch, h, w, text, cfg):
    return {
        "hidden_states": _randn(g, batch, cfg["in_channels"], h, w),
        "timestep": torch.linspace(999.0, 500.0, batch),
        "encoder_hidden_states": _randn(g, batch, text, cfg["caption_channels"]),
    }


def dit_inputs(g, batch, h, w, text, cfg):
    return {
        "hidden_states": _randn(g, batch, cfg["in_channels"], h, w),
        "timestep": torch.linspace(999.0, 500.0, batch),
        "class_labels": torch.arange(batch, dtype=torch.int64) * 7 + 1,
    }

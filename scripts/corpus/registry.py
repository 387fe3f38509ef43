"""Which corpus files exist, how each is made, and at which sizes it is checked."""
import corpus_models as cm

OPSET = 17

# Per model kind: the diffusers class, ONNX interface, and how inputs / ground-truth grids are made.
KINDS = {
    "unet": dict(
        cls="UNet2DConditionModel",
        forward=cm.unet_forward,
        inputs=["sample", "timestep", "encoder_hidden_states"],
        outputs=["out_sample"],
        dynamic_axes={
            "sample": {0: "batch", 2: "height", 3: "width"},
            "timestep": {0: "batch"},
            "encoder_hidden_states": {0: "batch", 1: "sequence"},
            "out_sample": {0: "batch", 2: "height", 3: "width"},
        },
        make=lambda g, cfg, b, h, w, t: cm.unet_inputs(g, b, h, w, t, cfg["cross_attention_dim"]),
        grid0=lambda cfg, h, w: (h, w),
        unet=True,
    ),
    "unet_xl": dict(
        cls="UNet2DConditionModel",
        forward=cm.unet_xl_forward,
        inputs=["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"],
        outputs=["out_sample"],
        dynamic_axes={
            "sample": {0: "batch", 2: "height", 3: "width"},
            "timestep": {0: "batch"},
            "encoder_hidden_states": {0: "batch", 1: "sequence"},
            "text_embeds": {0: "batch"},
            "time_ids": {0: "batch"},
            "out_sample": {0: "batch", 2: "height", 3: "width"},
        },
        make=lambda g, cfg, b, h, w, t: cm.unet_xl_inputs(
            g, b, h, w, t, cfg["cross_attention_dim"], cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]
        ),
        grid0=lambda cfg, h, w: (h, w),
        unet=True,
    ),
    "sd3": dict(
        cls="SD3Transformer2DModel",
        forward=cm.sd3_forward,
        inputs=["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep"],
        outputs=["out_hidden_states"],
        dynamic_axes={
            "hidden_states": {0: "batch", 2: "height", 3: "width"},
            "encoder_hidden_states": {0: "batch", 1: "sequence"},
            "pooled_projections": {0: "batch"},
            "timestep": {0: "batch"},
            "out_hidden_states": {0: "batch", 2: "height", 3: "width"},
        },
        make=lambda g, cfg, b, h, w, t: cm.sd3_inputs(g, b, h, w, t, cfg),
        grid0=lambda cfg, h, w: (h // cfg["patch_size"], w // cfg["patch_size"]),
        unet=False,
    ),
    "flux": dict(
        cls="FluxTransformer2DModel",
        forward=cm.flux_forward,
        inputs=["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep", "img_ids", "txt_ids", "guidance"],
        outputs=["out_hidden_states"],
        dynamic_axes={
            "hidden_states": {0: "batch", 1: "image_tokens"},
            "encoder_hidden_states": {0: "batch", 1: "text_tokens"},
            "pooled_projections": {0: "batch"},
            "timestep": {0: "batch"},
            "img_ids": {0: "image_tokens"},
            "txt_ids": {0: "text_tokens"},
            "guidance": {0: "batch"},
            "out_hidden_states": {0: "batch", 1: "image_tokens"},
        },
        make=lambda g, cfg, b, h, w, t: cm.flux_inputs(g, b, h, w, t, cfg),
        grid0=lambda cfg, h, w: (h // 2, w // 2),
        unet=False,
        text_in_self=True,
    ),
    "pixart": dict(
        cls="PixArtTransformer2DModel",
        forward=cm.pixart_forward,
        inputs=["hidden_states", "timestep", "encoder_hidden_states"],
        outputs=["out_hidden_states"],
        dynamic_axes={
            "hidden_states": {0: "batch"},
            "timestep": {0: "batch"},
            "encoder_hidden_states": {0: "batch", 1: "sequence"},
            "out_hidden_states": {0: "batch"},
        },
        make=lambda g, cfg, b, h, w, t: cm.pixart_inputs(g, b, h, w, t, cfg),
        grid0=lambda cfg, h, w: (h // cfg["patch_size"], w // cfg["patch_size"]),
        unet=False,
    ),
    "dit": dict(
        cls="DiTTransformer2DModel",
        forward=cm.dit_forward,
        inputs=["hidden_states", "timestep", "class_labels"],
        outputs=["out_hidden_states"],
        dynamic_axes={
            "hidden_states": {0: "batch"},
            "timestep": {0: "batch"},
            "class_labels": {0: "batch"},
            "out_hidden_states": {0: "batch"},
        },
        make=lambda g, cfg, b, h, w, t: cm.dit_inputs(g, b, h, w, t, cfg),
        grid0=lambda cfg, h, w: (h // cfg["patch_size"], w // cfg["patch_size"]),
        unet=False,
    ),
}

# Reference sets: (batch, latent H, latent W, text tokens). "ref" is small and non-square (H != W
# catches a transposed grid); "latent64" is the 64x64 latent the speed goals are stated at.
UNET_SETS = {"ref": (2, 32, 24, 12), "latent64": (1, 64, 64, 77)}
UNET_STATIC = {"ref": (2, 64, 64, 77)}
# The classic path's baddbmm(beta=0) reads a torch.empty([B*heads, N, M]) that constant folding
# turns into an all-zero initializer per attention: at a 64x64 latent that is 1.47 GB of zeros, so
# the classic static file is exported at a small (non-square) latent instead.
CLASSIC_STATIC = {"ref": (1, 16, 8, 77)}
SD3_SETS = {"ref": (2, 32, 24, 12), "latent64": (1, 64, 64, 77)}
FLUX_SETS = {"ref": (1, 32, 24, 12), "latent64": (1, 64, 64, 64)}

BASE = {
    # name: kind, family, config, seed, attention path, shapes, reference sets
    "sd15_classic_static": ("unet", "sd15-unet", cm.UNET_SD15, 1500, "classic", "static", CLASSIC_STATIC),
    "sd15_classic_dynamic": ("unet", "sd15-unet", cm.UNET_SD15, 1500, "classic", "dynamic", UNET_SETS),
    "sd15_sdpa_static": ("unet", "sd15-unet", cm.UNET_SD15, 1500, "sdpa", "static", UNET_STATIC),
    "sd15_sdpa_dynamic": ("unet", "sd15-unet", cm.UNET_SD15, 1500, "sdpa", "dynamic", UNET_SETS),
    "sd2_sdpa_dynamic": ("unet", "sd2-unet", cm.UNET_SD2, 2000, "sdpa", "dynamic", UNET_SETS),
    "sdxl_sdpa_dynamic": ("unet_xl", "sdxl-unet", cm.UNET_SDXL, 3000, "sdpa", "dynamic", UNET_SETS),
    "sdxl_sdpa_static": ("unet_xl", "sdxl-unet", cm.UNET_SDXL, 3000, "sdpa", "static", UNET_STATIC),
    "sd3_sdpa_dynamic": ("sd3", "sd3-mmdit", cm.SD3, 4000, "sdpa", "dynamic", SD3_SETS),
    "sd35_sdpa_dynamic": ("sd3", "sd3.5-mmdit", cm.SD35, 4500, "sdpa", "dynamic", SD3_SETS),
    "flux_sdpa_dynamic": ("flux", "flux", cm.FLUX, 5000, "sdpa", "dynamic", FLUX_SETS),
    # Static: with a dynamic batch, torch 1.13 cannot tell that PixArt's `hidden_states.squeeze(1)` is
    # a no-op (dim 1 holds 1024 tokens) and writes If(Squeeze, Identity); onnxruntime 1.30 refuses to
    # load that If ("Dimension of input 1 must be 1 instead of 1024" in the unused branch).
    "pixart_sdpa_static": ("pixart", "pixart-alpha", cm.PIXART, 6000, "sdpa", "static", {"ref": (2, 64, 64, 120)}),
    "dit_sdpa_dynamic": ("dit", "dit", cm.DIT, 7000, "sdpa", "dynamic", {"ref": (2, 32, 32, 0)}),
}

# What each base file accepts at run time (derived files inherit it); the 64x64-latent sets check it.
ACCEPTS = {
    "sd15_classic_static": "exactly the exported shapes: batch 1, latent 16x8, 77 text tokens",
    "sd15_sdpa_static": "exactly the exported shapes: batch 2, latent 64x64, 77 text tokens",
    "sdxl_sdpa_static": "exactly the exported shapes: batch 2, latent 64x64, 77 text tokens",
    "pixart_sdpa_static": "exactly the exported shapes: batch 2, latent 64x64, 120 text tokens",
    "unet": "any batch, any text length; latent height and width multiples of 8 (checked: 32x24, 64x64)",
    "unet_xl": "any batch, any text length; latent height and width multiples of 4 (checked: 32x24, 64x64)",
    "sd3": "any batch, any text length; latent height and width even and at most 2 * pos_embed_max_size = 64 "
    "(checked: 32x24, 64x64)",
    "flux": "any batch, any text length; image_tokens = (H/2)*(W/2) for a latent H x W with matching img_ids "
    "(checked: 32x24 -> 192 tokens, 64x64 -> 1024 tokens)",
    "dit": "any batch; latent fixed at 32x32 (the sin-cos position table is baked in at sample_size)",
}


def accepts(name):
    if name in ACCEPTS:
        return ACCEPTS[name]
    return ACCEPTS[BASE[name][0]]


# Derived public formats: name -> (source, how, options)
DERIVED = {
    "sd15_sdpa_dynamic_extdata": ("sd15_sdpa_dynamic", "external-data", {}),
    "sd15_sdpa_dynamic_fp16": ("sd15_sdpa_dynamic", "fp16", {}),
    "flux_sdpa_dynamic_fp16": ("flux_sdpa_dynamic", "fp16", {}),
    "sd15_sdpa_dynamic_ort-extended": ("sd15_sdpa_dynamic", "ort-optimized", {"level": "extended"}),
    "sd15_sdpa_dynamic_ort-all": ("sd15_sdpa_dynamic", "ort-optimized", {"level": "all"}),
    "flux_sdpa_dynamic_ort-extended": ("flux_sdpa_dynamic", "ort-optimized", {"level": "extended"}),
    "sd15_fused-mha_dynamic": ("sd15_sdpa_dynamic", "fused-mha", {"model_type": "unet"}),
    "flux_fused-mha_dynamic": ("flux_sdpa_dynamic", "fused-mha", {"model_type": "mmdit"}),
}

ORDER = list(BASE) + list(DERIVED)

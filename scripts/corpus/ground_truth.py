"""Ground truth from the torch module tree: every diffusers Attention call, in execution order.

The record is taken in eager mode on the reference inputs, by wrapping each Attention instance's
forward for that one pass (the exported graph never sees the wrapper). For each call it notes
what the module is (self / cross / joint attention, heads, head_dim, channels, RoPE, SD3
context_pre_only, q/k norm) and the image token grid [H, W] its queries cover, found from the
query token count and the latent size at the model input -- nothing here looks at ONNX.
"""
import math

from diffusers.models.attention_processor import Attention


def _halvings(h, w, depth=6):
    """Token grids of a UNet's levels: Downsample2D is a stride-2 3x3 conv with padding 1."""
    grids = [(h, w)]
    for _ in range(depth):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        grids.append((h, w))
    return grids


def _grid_for(tokens, candidates):
    hits = [list(g) for g in dict.fromkeys(candidates) if g[0] * g[1] == tokens]
    if len(hits) != 1:
        raise RuntimeError(f"ground truth: {tokens} image tokens match grids {hits} of {candidates}")
    return hits[0]


def _norm_name(m):
    return None if m is None else type(m).__name__


class AttentionRecorder:
    """Use as `with AttentionRecorder(model, grid0, text_tokens, unet) as rec: model(...)`."""

    def __init__(self, model, grid0, text_tokens, unet):
        self.model = model
        self.candidates = _halvings(*grid0) if unet else [tuple(grid0)]
        self.text_tokens = text_tokens
        self.calls = []
        self._saved = []

    def __enter__(self):
        for name, mod in self.model.named_modules():
            if isinstance(mod, Attention):
                self._saved.append((mod, mod.__dict__.get("forward")))
                mod.forward = self._wrap(name, mod, mod.forward)
        return self

    def __exit__(self, *exc):
        for mod, old in self._saved:
            if old is None:
                del mod.forward
            else:
                mod.forward = old
        self._saved = []

    def _wrap(self, name, mod, inner):
        def forward(hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
            self.calls.append(self._describe(name, mod, hidden_states, encoder_hidden_states, attention_mask, kwargs))
            return inner(hidden_states, encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask, **kwargs)

        return forward

    def _describe(self, name, mod, hs, ehs, mask, kwargs):
        if hs.ndim != 3:
            raise RuntimeError(f"ground truth: {name} got hidden_states of rank {hs.ndim}, expected [B, N, C]")
        tokens = hs.shape[1]
        rope = kwargs.get("image_rotary_emb") is not None
        entry = {
            "module": name,
            "onnx_scope": scope_names(name),
            "processor": type(mod.processor).__name__,
            "heads": mod.heads,
            "head_dim": mod.inner_dim // mod.heads,
            "channels": mod.query_dim,
            "rope": rope,
            "qk_norm": _norm_name(mod.norm_q),
            "context_pre_only": bool(mod.context_pre_only),
            "attention_mask": mask is not None,
            "batch": hs.shape[0],
        }
        if ehs is not None and getattr(mod, "add_q_proj", None) is not None:
            # SD3 / Flux double-stream: image and context are projected apart, joined inside.
            entry.update(kind="joint", layout="separate-streams", image_tokens=tokens, text_tokens=ehs.shape[1])
            entry["context_channels"] = mod.add_k_proj.in_features
        elif ehs is not None:
            entry.update(kind="cross", image_tokens=tokens, text_tokens=ehs.shape[1])
            entry["context_channels"] = mod.to_k.in_features
        elif self.text_tokens and name.startswith("single_transformer_blocks."):
            # Flux single-stream: one sequence [text; image], projected together.
            entry.update(kind="joint", layout="concatenated-text-first")
            entry.update(image_tokens=tokens - self.text_tokens, text_tokens=self.text_tokens)
        else:
            entry.update(kind="self", image_tokens=tokens, text_tokens=0)
        entry["grid"] = _grid_for(entry["image_tokens"], self.candidates)
        return entry


def scope_names(name):
    """torch 1.13's ONNX node-name scope for a module path: '/down_blocks.0/attentions.0/...'."""
    parts, out = name.split("."), []
    for p in parts:
        if p.isdigit() and out:
            out[-1] += "." + p
        else:
            out.append(p)
    return "/" + "/".join(out)

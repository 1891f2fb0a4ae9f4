"""Vision Transformer (ViT) and masked autoencoder (MAE).

You build an image classifier that reads an image as a sequence of patches, then a masked
autoencoder that learns features by filling in the patches it was not shown:

1. patches: `patchify` (given) and its inverse `unpatchify`; `PatchEmbed`, the same idea as
   one convolution whose stride equals its kernel size;
2. `ClassificationViT`: patch tokens + a CLS token + learned positions -> Transformer ->
   the CLS token's output -> class logits; `cls_attention_maps` shows where CLS looks;
3. masking: `index_sequence` (given), `random_masking`, `restore_masked`;
4. `MaskedAutoEncoder`: `forward_encoder` (sees only the kept patches), `forward_decoder`
   (predicts every patch), `forward_encoder_representation` (no masking, for downstream
   use) and `mae_loss` (mean squared error on the removed patches only);
5. `ClassificationMAE`: a classifier on the MAE's CLS feature, trained either as a linear
   probe (`detach=True`: the encoder stays frozen) or fully fine-tuned (`detach=False`).

Conventions used everywhere in this file:
- Images are (B, C, H, W), square, with H and W multiples of the patch size.
- A patch sequence is (B, L, C * p * p), patches in row-major order (left to right, then
  top to bottom) and each patch's values ordered (channel, row, column).
- `num_patches` means patches **per side** (8 for 32x32 images with 4x4 patches), as in the
  source homework; a sequence therefore has num_patches**2 patch tokens.
- MAE masks: 1 = removed (masked, the decoder must predict it), 0 = kept (the encoder sees
  it). Masks are float tensors with the dtype of the tokens.

Run `make grade A=vit` to score this file; `notebooks/vit.ipynb` walks through it.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------
# Part 1. Patches
# ---------------------------------------------------------------------------------------


def patchify(images: torch.Tensor, patch_size: int = 4) -> torch.Tensor:
    """Cut images into non-overlapping square patches (given).

    images: (B, C, H, W). Returns (B, (H/p) * (W/p), C * p * p): patches in row-major
    order, each flattened as (channel, row in patch, column in patch).
    """
    B, C, H, W = images.shape
    p = patch_size
    x = images.reshape(B, C, H // p, p, W // p, p)             # (B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 1, 3, 5)                            # (B, h, w, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def unpatchify(patches: torch.Tensor, patch_size: int = 4) -> torch.Tensor:
    """The exact inverse of `patchify` for square images.

    patches: (B, L, C * p * p) with L a perfect square (h = w = sqrt(L) patches per side).
    Returns images (B, C, h * p, w * p); unpatchify(patchify(x, p), p) == x.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.fold`, `torch.nn.Fold`.
    """
    # BEGIN SOLUTION
    # HINT: undo patchify's steps in reverse: each patch row (C * p * p) goes back to its (C, p,
    #       p) block at its (row, column) of the grid.
    B, L, D = patches.shape
    p = patch_size
    side = math.isqrt(L)
    channels = D // (p * p)
    x = patches.reshape(B, side, side, channels, p, p)         # (B, h, w, C, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)                            # (B, C, h, p, w, p)
    return x.reshape(B, channels, side * p, side * p)
    # END SOLUTION


class PatchEmbed(nn.Module):
    """Patch embedding as a convolution: (B, nin, H, W) -> (B, num_patches, nout).

    A Conv2d whose kernel size and stride both equal the patch size visits each patch once
    and applies the same linear map to it: it equals `patchify` followed by an nn.Linear
    whose weight is the conv weight reshaped to (nout, nin * p * p).
    """

    def __init__(self, img_size: int, patch_size: int, nin: int, nout: int):
        super().__init__()
        assert img_size % patch_size == 0, "the image size must be a multiple of the patch size"
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        # BEGIN SOLUTION
        # HINT: a convolution whose kernel and stride are the patch size turns each patch into
        #       one nout vector; its name, proj, is graded.
        self.proj = nn.Conv2d(nin, nout, kernel_size=patch_size, stride=patch_size)
        # END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, nin, H, W) -> (B, (H/p) * (W/p), nout), patches in row-major order."""
        # BEGIN SOLUTION
        # HINT: self.proj gives (B, nout, h, w); flatten the grid, then put patches before
        #       channels.
        x = self.proj(x)                                        # (B, nout, h, w)
        return x.flatten(2).transpose(1, 2)                     # (B, h * w, nout)
        # END SOLUTION


# ---------------------------------------------------------------------------------------
# Part 2. The ViT classifier
# ---------------------------------------------------------------------------------------


class Transformer(nn.Module):
    """A stack of post-LN Transformer encoder layers (given).

    forward(x) maps (B, T, D) -> (B, T, D). With return_attention=True it also returns the
    attention weights of every layer and head, (B, n_layers, n_heads, T, T), where
    weights[b, l, h, i, j] is how much token i attends to token j (rows sum to 1).
    """

    def __init__(self, embedding_dim: int = 256, n_heads: int = 4, n_layers: int = 4,
                 feedforward_dim: int = 1024):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model=embedding_dim, nhead=n_heads, dim_feedforward=feedforward_dim,
            activation=F.gelu, batch_first=True, dropout=0.0)
        self.transformer = nn.TransformerEncoder(layer, num_layers=n_layers,
                                                 enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        if not return_attention:
            return self.transformer(x)
        weights = []
        for layer in self.transformer.layers:  # the same computation, one layer at a time
            attended, w = layer.self_attn(x, x, x, need_weights=True,
                                          average_attn_weights=False)       # w: (B, H, T, T)
            x = layer.norm1(x + layer.dropout1(attended))
            hidden = layer.dropout(layer.activation(layer.linear1(x)))
            x = layer.norm2(x + layer.dropout2(layer.linear2(hidden)))
            weights.append(w)
        return x, torch.stack(weights, dim=1)                                # (B, L, H, T, T)


class ClassificationViT(nn.Module):
    """Vision Transformer for classification.

    n_classes: number of classes. embedding_dim: D. patch_size: p. num_patches: patches
    per side (the sequence has num_patches**2 patch tokens plus one CLS token).
    in_channels, n_heads, n_layers, feedforward_dim extend the source homework's signature
    (which fixed 3 channels and a 4-layer, 4-head, 1024-wide Transformer) so that the
    same class runs on grey-scale digits and in small graded cases.
    """

    def __init__(self, n_classes: int, embedding_dim: int = 256, patch_size: int = 4,
                 num_patches: int = 8, in_channels: int = 3, n_heads: int = 4,
                 n_layers: int = 4, feedforward_dim: int = 1024):
        super().__init__()
        self.n_classes = n_classes
        self.embedding_dim = embedding_dim
        self.patch_size = patch_size
        self.num_patches = num_patches
        self.in_channels = in_channels
        self.transformer = Transformer(embedding_dim, n_heads, n_layers, feedforward_dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embedding_dim) * 0.02)
        # One position per patch plus one for the CLS token (which comes first).
        self.position_encoding = nn.Parameter(
            torch.randn(1, num_patches * num_patches + 1, embedding_dim) * 0.02)
        self.patch_projection = nn.Linear(patch_size * patch_size * in_channels, embedding_dim)
        self.output_head = nn.Sequential(nn.LayerNorm(embedding_dim),
                                         nn.Linear(embedding_dim, n_classes))

    def forward(self, images: torch.Tensor, return_attention: bool = False):
        """images (B, C, H, W) -> logits (B, n_classes).

        1. patchify with the model's own `patch_size`; 2. project every patch with
        `patch_projection` and put `cls_token` in front; 3. add `position_encoding` (it
        covers the CLS token too); 4. run `transformer`; 5. take the output at position 0
        (the CLS token); 6. `output_head`. A batch of one gives logits (1, n_classes).
        With return_attention=True, return (logits, attention) where attention is the
        Transformer's (B, n_layers, n_heads, 1 + L, 1 + L) weights.
        """
        # BEGIN SOLUTION
        # HINT: the CLS token is expanded to (B, 1, D) and concatenated before the patch tokens.
        tokens = self.patch_projection(patchify(images, self.patch_size))      # (B, L, D)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)                   # (B, 1, D)
        x = torch.cat([cls, tokens], dim=1) + self.position_encoding           # (B, 1+L, D)
        if return_attention:
            x, attention = self.transformer(x, return_attention=True)
        else:
            x, attention = self.transformer(x), None
        logits = self.output_head(x[:, 0])  # read the CLS token's output
        return (logits, attention) if return_attention else logits
        # END SOLUTION


def cls_attention_maps(model: ClassificationViT, images: torch.Tensor) -> torch.Tensor:
    """Where the CLS token looks: (B, C, H, W) -> (B, h, w) heat maps over the patch grid.

    Take the attention weights from `model(images, return_attention=True)`, keep the CLS
    token's row (query 0) restricted to the patch columns (keys 1..L), average over all
    layers and heads, and arrange the L values as the h x w grid of patches.
    """
    # BEGIN SOLUTION
    # HINT: CLS (query 0) attending to the patch keys, averaged over layers and heads, laid out
    #       on the (side, side) grid.
    _, attention = model(images, return_attention=True)                     # (B, L, H, T, T)
    maps = attention[:, :, :, 0, 1:].mean(dim=(1, 2))                      # (B, T - 1)
    side = math.isqrt(maps.shape[-1])
    return maps.reshape(-1, side, side)
    # END SOLUTION


# ---------------------------------------------------------------------------------------
# Part 3. Masking
# ---------------------------------------------------------------------------------------


def index_sequence(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Gather positions along dim 1 (given).

    x: (B, L) or (B, L, F); ids: (B, L') of positions in 0..L-1.
    Returns (B, L') or (B, L', F) with out[b, i] = x[b, ids[b, i]].
    """
    if x.dim() == 3:
        ids = ids.unsqueeze(-1).expand(-1, -1, x.shape[-1])
    return torch.take_along_dim(x, ids, dim=1)


def random_masking(x: torch.Tensor, keep_length: int, ids_shuffle: torch.Tensor):
    """Keep the first `keep_length` positions of a shuffle, remove the rest.

    x: (B, L, F). ids_shuffle: (B, L), each row a permutation of 0..L-1.
    Returns (kept, mask, ids_restore):
      kept (B, keep_length, F): x at positions ids_shuffle[:, :keep_length], in that order;
      mask (B, L), dtype of x: 1 at the removed positions ids_shuffle[:, keep_length:],
        0 at the kept ones;
      ids_restore (B, L) int64: the inverse permutation of ids_shuffle, so that
        index_sequence(cat([kept, removed], 1), ids_restore) puts every token back.
    """
    # BEGIN SOLUTION
    # HINT: each shuffle's first `keep` positions are kept; the inverse permutation restores the
    #       order; the mask marks the removed patches in the original order.
    kept = index_sequence(x, ids_shuffle[:, :keep_length])                 # (B, keep, F)
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # where each position went in the shuffle
    mask = (ids_restore >= keep_length).to(x.dtype)                        # (B, L): 1 = removed
    return kept, mask, ids_restore
    # END SOLUTION


def restore_masked(kept_x: torch.Tensor, masked_x: torch.Tensor,
                   ids_restore: torch.Tensor) -> torch.Tensor:
    """Undo the shuffle of `random_masking`.

    kept_x: (B, keep, F) tokens of the kept positions (shuffle order); masked_x:
    (B, L - keep, F) tokens standing in for the removed ones; ids_restore: (B, L).
    Returns (B, L, F) with every token back at its original position.
    """
    # BEGIN SOLUTION
    # HINT: kept tokens then mask tokens make the shuffled order; the restoring permutation puts
    #       them back.
    return index_sequence(torch.cat([kept_x, masked_x], dim=1), ids_restore)
    # END SOLUTION


# ---------------------------------------------------------------------------------------
# Part 4. The masked autoencoder
# ---------------------------------------------------------------------------------------


class MaskedAutoEncoder(nn.Module):
    """MAE: encode a random 1 - mask_ratio of the patches, decode all of them.

    encoder: a Transformer of width encoder_embedding_dim; decoder: a Transformer of width
    decoder_embedding_dim. num_patches: patches per side. Of the L = num_patches**2
    patches, `masked_length` = int(L * mask_ratio) are removed and `keep_length` are kept
    (48 and 16 for the source's CIFAR setting). Position encodings cover the L patches
    only: the CLS token never gets one. in_channels extends the source's signature.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module,
                 encoder_embedding_dim: int = 256, decoder_embedding_dim: int = 128,
                 patch_size: int = 4, num_patches: int = 8, mask_ratio: float = 0.75,
                 in_channels: int = 3):
        super().__init__()
        self.encoder_embedding_dim = encoder_embedding_dim
        self.decoder_embedding_dim = decoder_embedding_dim
        self.patch_size = patch_size
        self.num_patches = num_patches
        self.mask_ratio = mask_ratio
        self.in_channels = in_channels
        self.masked_length = int(num_patches * num_patches * mask_ratio)
        self.keep_length = num_patches * num_patches - self.masked_length
        self.encoder = encoder
        self.decoder = decoder
        patch_dim = patch_size * patch_size * in_channels
        self.encoder_input_projection = nn.Linear(patch_dim, encoder_embedding_dim)
        self.decoder_input_projection = nn.Linear(encoder_embedding_dim, decoder_embedding_dim)
        self.decoder_output_projection = nn.Linear(decoder_embedding_dim, patch_dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, encoder_embedding_dim) * 0.01)
        self.encoder_position_encoding = nn.Parameter(
            torch.randn(1, num_patches * num_patches, encoder_embedding_dim) * 0.01)
        self.decoder_position_encoding = nn.Parameter(
            torch.randn(1, num_patches * num_patches, decoder_embedding_dim) * 0.01)
        self.masked_tokens = nn.Parameter(torch.randn(1, 1, decoder_embedding_dim) * 0.01)

    def forward_encoder(self, images: torch.Tensor, ids_shuffle: torch.Tensor | None = None):
        """Encode the kept patches.

        images: (B, C, H, W). ids_shuffle: (B, L) permutations, or None to draw a fresh
        random permutation for each image, independently, on the images' device (every
        image of the batch gets its own mask). How you draw them is up to you: the grader
        never compares them with a particular random stream; it checks that each image
        keeps exactly keep_length patches, that the images' permutations differ, that
        ids_restore inverts the shuffle, and that two calls mask differently.
        1. patchify (with `self.patch_size`); 2. `encoder_input_projection`; 3. add
        `encoder_position_encoding`; 4. `random_masking` with `keep_length`; 5. put
        `cls_token` in front; 6. `encoder`.
        Returns (encoder_output (B, 1 + keep_length, D_enc), mask (B, L), ids_restore (B, L)).
        """
        # BEGIN SOLUTION
        # HINT: without ids_shuffle, draw an independent random permutation of the L patches for
        #       every image, on the images' device.
        x = self.encoder_input_projection(patchify(images, self.patch_size))   # (B, L, De)
        x = x + self.encoder_position_encoding
        if ids_shuffle is None:
            ids_shuffle = torch.rand(x.shape[:2], device=x.device).argsort(dim=1)
        kept, mask, ids_restore = random_masking(x, self.keep_length, ids_shuffle)
        cls = self.cls_token.expand(x.shape[0], -1, -1)                        # (B, 1, De)
        encoder_output = self.encoder(torch.cat([cls, kept], dim=1))           # (B, 1+keep, De)
        return encoder_output, mask, ids_restore
        # END SOLUTION

    def forward_decoder(self, encoder_embeddings: torch.Tensor,
                        ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict every patch from the encoder's output.

        encoder_embeddings: (B, 1 + keep, D_enc), CLS first. ids_restore: (B, L).
        1. `decoder_input_projection`; 2. split off the CLS token; 3. `restore_masked` with
        `masked_tokens` expanded to (B, L - keep, D_dec) for the removed patches; 4. add
        `decoder_position_encoding`; 5. put the CLS token back in front; 6. `decoder`, then
        drop the CLS output; 7. `decoder_output_projection`.
        Returns predicted patches (B, L, C * p * p).
        """
        # BEGIN SOLUTION
        # HINT: the number of removed patches is ids_restore.shape[1] minus the kept ones.
        x = self.decoder_input_projection(encoder_embeddings)                  # (B, 1+keep, Dd)
        cls, kept = x[:, :1], x[:, 1:]
        removed = ids_restore.shape[1] - kept.shape[1]
        masked = self.masked_tokens.expand(x.shape[0], removed, -1)            # (B, L-keep, Dd)
        x = restore_masked(kept, masked, ids_restore)                          # (B, L, Dd)
        x = x + self.decoder_position_encoding
        x = self.decoder(torch.cat([cls, x], dim=1))[:, 1:]                     # (B, L, Dd)
        return self.decoder_output_projection(x)                               # (B, L, C*p*p)
        # END SOLUTION

    def forward(self, images: torch.Tensor):
        """Random masking, encode, decode (given). Returns (predicted patches, mask)."""
        encoder_output, mask, ids_restore = self.forward_encoder(images)
        return self.forward_decoder(encoder_output, ids_restore), mask

    def forward_encoder_representation(self, images: torch.Tensor) -> torch.Tensor:
        """Encode every patch, without masking: steps 1, 2, 3, 5 and 6 of forward_encoder.

        images: (B, C, H, W) -> (B, 1 + L, D_enc), the CLS token's output first.
        """
        # BEGIN SOLUTION
        # HINT: forward_encoder without random_masking.
        x = self.encoder_input_projection(patchify(images, self.patch_size))   # (B, L, De)
        x = x + self.encoder_position_encoding
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return self.encoder(torch.cat([cls, x], dim=1))                        # (B, 1+L, De)
        # END SOLUTION


def mae_loss(predicted_patches: torch.Tensor, target_patches: torch.Tensor,
             mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error on the removed patches only.

    predicted_patches, target_patches: (B, L, P); mask: (B, L), 1 = removed.
    Each patch's error is the mean over its P values; the loss is the mean of those
    errors over the removed patches (kept patches do not count). Returns a scalar tensor
    whose gradient reaches `predicted_patches` (and `target_patches`): it trains the MAE, and
    the grader compares those gradients with autograd's of this formula.
    """
    # BEGIN SOLUTION
    # HINT: the squared error averaged within each patch, then averaged over the removed patches
    #       only.
    per_patch = (predicted_patches - target_patches).pow(2).mean(dim=-1)   # (B, L)
    return (per_patch * mask).sum() / mask.sum()
    # END SOLUTION


def mae_training_loss(mae: MaskedAutoEncoder, images: torch.Tensor) -> torch.Tensor:
    """One pretraining loss (given): mask at random, reconstruct, score the removed patches."""
    predicted, mask = mae(images)
    return mae_loss(predicted, patchify(images, mae.patch_size), mask)


# ---------------------------------------------------------------------------------------
# Part 5. Classification with a pretrained MAE
# ---------------------------------------------------------------------------------------


class ClassificationMAE(nn.Module):
    """A classifier on the MAE encoder's CLS feature.

    detach=True is a linear probe: the feature is detached, so only `output_head` learns
    and the pretrained encoder stays exactly as it is. detach=False fine-tunes everything.
    """

    def __init__(self, n_classes: int, mae: MaskedAutoEncoder, embedding_dim: int = 256,
                 detach: bool = False):
        super().__init__()
        self.n_classes = n_classes
        self.embedding_dim = embedding_dim
        self.mae = mae
        self.output_head = nn.Sequential(nn.LayerNorm(embedding_dim),
                                         nn.Linear(embedding_dim, n_classes))
        self.detach = detach

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) -> logits (B, n_classes), from the unmasked CLS output."""
        # BEGIN SOLUTION
        # HINT: the CLS feature of the unmasked encoder, cut from the graph when self.detach,
        #       through the output head.
        features = self.mae.forward_encoder_representation(images)[:, 0]      # (B, De)
        if self.detach:
            features = features.detach()  # linear probe: no gradient reaches the encoder
        return self.output_head(features)
        # END SOLUTION

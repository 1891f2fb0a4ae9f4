"""Correct ways to write `vit` other than the reference's, each a small edit of it.

EQUIVALENTS = {name: (how it differs, [(text in the solution, replacement)])}, the format of
vit_mutants.py. Every one must score full marks on both fixture sets and pass on every
seed of `python -m grader audit vit` (tests/test_assignments.py).

Not here: attention written with einsum or F.scaled_dot_product_attention. The
assignment's Transformer is given (torch's own encoder layers); students never write the
attention itself, only read its weights.
"""
EQUIVALENTS = {
    "patch_embed_as_linear": (
        "PatchEmbed.forward as patchify + a linear map with the conv weight reshaped to "
        "(nout, nin * p * p), instead of calling the convolution",
        [("        x = self.proj(x)                                        # (B, nout, h, w)\n"
          "        return x.flatten(2).transpose(1, 2)                     # (B, h * w, nout)\n",
          "        weight = self.proj.weight.reshape(self.proj.out_channels, -1)\n"
          "        return patchify(x, self.patch_size) @ weight.T + self.proj.bias\n")]),
    "patch_embed_permute": (
        "PatchEmbed puts channels last with permute(0, 2, 3, 1) and then flattens the grid",
        [("return x.flatten(2).transpose(1, 2)",
          "return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])")]),
    "vit_positions_split_einsum": (
        "the ViT projects patches with einsum and adds the CLS position and the patch "
        "positions separately before concatenating; the CLS token is repeated, not expanded",
        [("        tokens = self.patch_projection(patchify(images, self.patch_size))      # (B, L, D)\n"
          "        cls = self.cls_token.expand(tokens.shape[0], -1, -1)                   # (B, 1, D)\n"
          "        x = torch.cat([cls, tokens], dim=1) + self.position_encoding           # (B, 1+L, D)\n",
          "        patches = patchify(images, self.patch_size)\n"
          "        tokens = torch.einsum('blp,dp->bld', patches, self.patch_projection.weight)\n"
          "        tokens = tokens + self.patch_projection.bias + self.position_encoding[:, 1:]\n"
          "        cls = (self.cls_token + self.position_encoding[:, :1]).repeat(len(images), 1, 1)\n"
          "        x = torch.cat([cls, tokens], dim=1)\n")]),
    "attention_maps_mean_first": (
        "cls_attention_maps averages layers and heads first, then takes the CLS row, and "
        "uses view with the batch size",
        [("    maps = attention[:, :, :, 0, 1:].mean(dim=(1, 2))                      # (B, T - 1)\n"
          "    side = math.isqrt(maps.shape[-1])\n"
          "    return maps.reshape(-1, side, side)\n",
          "    maps = attention.mean(dim=2).mean(dim=1)[:, 0, 1:].contiguous()\n"
          "    side = int(round(maps.shape[-1] ** 0.5))\n"
          "    return maps.view(images.shape[0], side, side)\n")]),
    "masking_scatter_and_indexing": (
        "random_masking with advanced indexing for the kept tokens, the inverse permutation "
        "by scatter, and the mask by scattering ones at the removed positions",
        [("    kept = index_sequence(x, ids_shuffle[:, :keep_length])                 # (B, keep, F)\n"
          "    ids_restore = torch.argsort(ids_shuffle, dim=1)  # where each position went in the shuffle\n"
          "    mask = (ids_restore >= keep_length).to(x.dtype)                        # (B, L): 1 = removed\n",
          "    B, L = ids_shuffle.shape\n"
          "    rows = torch.arange(B, device=x.device)[:, None]\n"
          "    kept = x[rows, ids_shuffle[:, :keep_length]]\n"
          "    ids_restore = torch.empty_like(ids_shuffle)\n"
          "    ids_restore[rows, ids_shuffle] = torch.arange(L, device=x.device).expand(B, L)\n"
          "    mask = torch.zeros(B, L, dtype=x.dtype, device=x.device)\n"
          "    mask.scatter_(1, ids_shuffle[:, keep_length:], 1.0)\n")]),
    "masking_randperm_per_row": (
        "forward_encoder draws the random permutations with one torch.randperm per image",
        [("ids_shuffle = torch.rand(x.shape[:2], device=x.device).argsort(dim=1)",
          "ids_shuffle = torch.stack([torch.randperm(x.shape[1], device=x.device)\n"
          "                                       for _ in range(x.shape[0])])")]),
    "restore_gather_indexing": (
        "restore_masked with torch.gather on an expanded index (and the masked tokens "
        "repeated rather than expanded in the decoder)",
        [("    return index_sequence(torch.cat([kept_x, masked_x], dim=1), ids_restore)\n",
          "    full = torch.cat([kept_x, masked_x], dim=1)\n"
          "    index = ids_restore[..., None].repeat(1, 1, full.shape[-1])\n"
          "    return torch.gather(full, 1, index)\n"),
         ("masked = self.masked_tokens.expand(x.shape[0], removed, -1)",
          "masked = self.masked_tokens.repeat(x.shape[0], removed, 1)")]),
    "mae_loss_boolean_index": (
        "mae_loss with F.mse_loss(reduction='none') and boolean indexing of the removed "
        "patches",
        [("    per_patch = (predicted_patches - target_patches).pow(2).mean(dim=-1)   # (B, L)\n"
          "    return (per_patch * mask).sum() / mask.sum()\n",
          "    per_patch = F.mse_loss(predicted_patches, target_patches, reduction='none')\n"
          "    return per_patch.mean(dim=-1)[mask.bool()].mean()\n")]),
    "probe_no_grad": (
        "ClassificationMAE runs the encoder under torch.no_grad() for the linear probe "
        "instead of detaching its output",
        [("        features = self.mae.forward_encoder_representation(images)[:, 0]      # (B, De)\n"
          "        if self.detach:\n"
          "            features = features.detach()  # linear probe: no gradient reaches the encoder\n",
          "        if self.detach:\n"
          "            with torch.no_grad():\n"
          "                features = self.mae.forward_encoder_representation(images)[:, 0, :]\n"
          "        else:\n"
          "            features = self.mae.forward_encoder_representation(images)[:, 0, :]\n")]),
    "mae_loss_float32_intermediate": (
        "mae_loss computes the squared errors in float32 (.float() before F.mse_loss), a "
        "float32 intermediate; the product with the float64 mask promotes back to float64",
        [("per_patch = (predicted_patches - target_patches).pow(2).mean(dim=-1)",
          "per_patch = F.mse_loss(predicted_patches.float(), target_patches.float(),\n"
          "                           reduction='none').mean(dim=-1)")]),
    "vit_positions_float32": (
        "the ViT adds position_encoding.float(), a float32 intermediate; the sum with the "
        "float64 tokens promotes back to float64",
        [("x = torch.cat([cls, tokens], dim=1) + self.position_encoding",
          "x = torch.cat([cls, tokens], dim=1) + self.position_encoding.float()")]),
}

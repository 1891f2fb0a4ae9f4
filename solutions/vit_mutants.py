"""Known mistakes in `vit`, each a small edit of the reference solution.

MUTANTS = {name: (what the student probably did, [(text in the solution, replacement)])}.
Each text must occur exactly once in solutions/vit.py. Fixtures store the outputs of every
mistake so the grader can name it; tests grade each one and expect lost points.
"""
MUTANTS = {
    "unpatchify_grid_transposed": (
        "unpatchify puts the patches back in transposed order (patch rows and columns "
        "swapped): patches run left to right, then top to bottom",
        [("x = x.permute(0, 3, 1, 4, 2, 5)", "x = x.permute(0, 3, 2, 4, 1, 5)")]),
    "patch_embed_reshape": (
        "PatchEmbed reshapes (B, D, L) to (B, L, D) instead of transposing it, which mixes "
        "channels and patches",
        [("return x.flatten(2).transpose(1, 2)",
          "return x.flatten(2).reshape(x.shape[0], -1, x.shape[1])")]),
    "no_position_encoding": (
        "the ViT does not add position_encoding to the tokens",
        [("x = torch.cat([cls, tokens], dim=1) + self.position_encoding",
          "x = torch.cat([cls, tokens], dim=1)")]),
    "cls_last_token": (
        "the classifier reads the last token instead of the CLS token at position 0",
        [("logits = self.output_head(x[:, 0])", "logits = self.output_head(x[:, -1])")]),
    "attention_to_cls": (
        "the heat map shows how much the patches attend to CLS, not how much CLS attends to "
        "the patches (query 0 is the CLS row)",
        [("attention[:, :, :, 0, 1:]", "attention[:, :, :, 1:, 0]")]),
    "mask_inverted": (
        "the mask is inverted: it must be 1 for removed patches and 0 for kept ones",
        [("mask = (ids_restore >= keep_length).to(x.dtype)",
          "mask = (ids_restore < keep_length).to(x.dtype)")]),
    "ids_restore_not_inverse": (
        "ids_restore is ids_shuffle itself, not its inverse permutation (argsort)",
        [("ids_restore = torch.argsort(ids_shuffle, dim=1)", "ids_restore = ids_shuffle.clone()")]),
    "restore_wrong_order": (
        "restore_masked concatenates [masked, kept]; the shuffle order is kept tokens first",
        [("torch.cat([kept_x, masked_x], dim=1)", "torch.cat([masked_x, kept_x], dim=1)")]),
    "decoder_no_position_encoding": (
        "the decoder does not add decoder_position_encoding after restoring the sequence",
        [("x = x + self.decoder_position_encoding\n        x = self.decoder(",
          "x = self.decoder(")]),
    "loss_on_all_patches": (
        "the MAE loss averages over all patches; only the removed ones (mask == 1) count",
        [("return (per_patch * mask).sum() / mask.sum()", "return per_patch.mean()")]),
    "detach_ignored": (
        "ClassificationMAE ignores detach=True, so the linear probe also trains the encoder",
        [("features = features.detach()  # linear probe: no gradient reaches the encoder",
          "features = features  # linear probe: no gradient reaches the encoder")]),
    "vit_patchify_default_size": (
        "patchify is called without the model's patch_size, so it cuts the default 4x4 "
        "patches: use patchify(images, self.patch_size)",
        [("tokens = self.patch_projection(patchify(images, self.patch_size))",
          "tokens = self.patch_projection(patchify(images))")]),
    "mae_patchify_default_size": (
        "patchify is called without the model's patch_size, so it cuts the default 4x4 "
        "patches: use patchify(images, self.patch_size)",
        [("x = self.encoder_input_projection(patchify(images, self.patch_size))   # (B, L, De)\n"
          "        x = x + self.encoder_position_encoding\n        if ids_shuffle",
          "x = self.encoder_input_projection(patchify(images))   # (B, L, De)\n"
          "        x = x + self.encoder_position_encoding\n        if ids_shuffle")]),
    "vit_squeeze_drops_batch": (
        "the ViT takes the CLS output with .squeeze(), which also drops the batch dimension "
        "of a batch of one: index it with x[:, 0] (or squeeze(1))",
        [("logits = self.output_head(x[:, 0])", "logits = self.output_head(x[:, :1].squeeze())")]),
    "classifier_squeeze_drops_batch": (
        "ClassificationMAE takes the CLS feature with .squeeze(), which also drops the batch "
        "dimension of a batch of one: index it with [:, 0] (or squeeze(1))",
        [("features = self.mae.forward_encoder_representation(images)[:, 0]",
          "features = self.mae.forward_encoder_representation(images)[:, :1].squeeze()")]),
    "mask_shared_permutation": (
        "with ids_shuffle=None one random permutation is drawn for the whole batch, so every "
        "image gets the same mask: draw one per image (torch.rand(B, L).argsort(dim=1))",
        [("ids_shuffle = torch.rand(x.shape[:2], device=x.device).argsort(dim=1)",
          "ids_shuffle = torch.rand(x.shape[1], device=x.device).argsort().expand("
          "x.shape[0], -1)")]),
    "kept_in_sorted_order": (
        "random_masking returns the kept tokens in their original order (sorted positions), "
        "not in the order of ids_shuffle[:, :keep_length]",
        [("kept = index_sequence(x, ids_shuffle[:, :keep_length])",
          "kept = index_sequence(x, ids_shuffle[:, :keep_length].sort(dim=1).values)")]),
    "loss_summed_over_patch": (
        "the MAE loss sums each patch's squared errors instead of averaging them over the "
        "patch's C * p * p values",
        [("per_patch = (predicted_patches - target_patches).pow(2).mean(dim=-1)",
          "per_patch = (predicted_patches - target_patches).pow(2).sum(dim=-1)")]),
    "representation_no_position_encoding": (
        "forward_encoder_representation does not add encoder_position_encoding",
        [("x = x + self.encoder_position_encoding\n"
          "        cls = self.cls_token.expand(x.shape[0], -1, -1)\n        return",
          "cls = self.cls_token.expand(x.shape[0], -1, -1)\n        return")]),
    "unpatchify_fold": (
        "uses torch.nn.functional.fold, which this part asks you to write",
        [("    x = patches.reshape(B, side, side, channels, p, p)         # (B, h, w, C, p, p)\n"
          "    x = x.permute(0, 3, 1, 4, 2, 5)                            # (B, C, h, p, w, p)\n"
          "    return x.reshape(B, channels, side * p, side * p)\n",
          "    return F.fold(patches.transpose(1, 2), output_size=(side * p, side * p),\n"
          "                  kernel_size=p, stride=p)\n")]),
    "masking_permutations_on_cpu": (
        "made a tensor on the CPU while its inputs are on another device",
        [("ids_shuffle = torch.rand(x.shape[:2], device=x.device).argsort(dim=1)",
          "ids_shuffle = torch.rand(x.shape[:2]).argsort(dim=1)")]),
    "mask_made_on_cpu": (
        "made a tensor on the CPU while its inputs are on another device",
        [("mask = (ids_restore >= keep_length).to(x.dtype)",
          "mask = torch.ones(ids_shuffle.shape, dtype=x.dtype).scatter(\n"
          "        1, ids_shuffle[:, :keep_length], 0.0)")]),
    "loss_cut_from_graph": (
        "the MAE loss is cut from the autograd graph (detach, .item() or a new "
        "torch.tensor): the value is right but no gradient reaches the model",
        [("return (per_patch * mask).sum() / mask.sum()",
          "return ((per_patch * mask).sum() / mask.sum()).detach()")]),
    "loss_normalises_mask_in_place": (
        "changes its input in place",
        [("    return (per_patch * mask).sum() / mask.sum()\n",
          "    mask /= mask.sum()  # weights that sum to 1\n"
          "    return (per_patch * mask).sum()\n")]),
}

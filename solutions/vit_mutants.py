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
}

"""Correct implementations of `simclr` written another way, as students write them.

EQUIVALENTS = {name: (how it differs, [(text in the solution, replacement)])}, the format of
simclr_mutants.py. Each must score 100% on the public and the autograder sets, and
`python -m grader audit simclr` shows how far inside the tolerances they stay.
"""
EQUIVALENTS = {
    "transform_as_function": (
        "the augmentation as a hand-written function calling the same transforms (the same "
        "draws in the same order) instead of T.Compose",
        [("    train_transform = T.Compose([\n"
          "        T.ToTensor(),\n"
          "        T.RandomResizedCrop(size, scale=crop_scale, generator=g),\n"
          "        T.RandomHorizontalFlip(0.5, generator=g),\n"
          "        T.RandomApply(T.ColorJitter(0.4, 0.4, 0.4, 0.1, generator=g), p=0.8, "
          "generator=g),\n"
          "        T.RandomGrayscale(0.2, generator=g),\n"
          "        T.Normalize(mean, std),\n"
          "    ])\n",
          "    crop = T.RandomResizedCrop(size, scale=crop_scale, generator=g)\n"
          "    flip = T.RandomHorizontalFlip(0.5, generator=g)\n"
          "    jitter = T.ColorJitter(0.4, 0.4, 0.4, 0.1, generator=g)\n"
          "    gray = T.RandomGrayscale(0.2, generator=g)\n"
          "    normalize = T.Normalize(mean, std)\n"
          "\n"
          "    def train_transform(img):\n"
          "        x = flip(crop(T.ToTensor()(img)))\n"
          "        if torch.rand(1, generator=g, dtype=torch.float64).item() < 0.8:\n"
          "            x = jitter(x)\n"
          "        return normalize(gray(x))\n")]),
    "naive_losses_in_a_list": (
        "the naive loss collects the 2N terms in a list and takes their mean; the "
        "denominator sums all 2N terms and subtracts the k = i one",
        [("            denominator = 0\n"
          "            for m in range(2 * N):\n"
          "                if m != i:\n"
          "                    denominator = denominator + torch.exp(sim(out[i], out[m]) / tau)\n"
          "            total_loss = total_loss - torch.log(numerator / denominator)\n"
          "    total_loss = total_loss / (2 * N)\n",
          "            terms = [torch.exp(sim(out[i], out[m]) / tau) for m in range(2 * N)]\n"
          "            denominator = sum(terms) - terms[i]\n"
          "            losses.append(-torch.log(numerator / denominator))\n"
          "    total_loss = torch.stack(losses).mean()\n"),
         ("    for k in range(N):\n        for i, j in ((k, k + N), (k + N, k)):",
          "    losses = []\n    for k in range(N):\n        for i, j in ((k, k + N), (k + N, k)):")]),
    "naive_float32_accumulator": (
        "the naive loss's denominators accumulated in float32 (a float32 intermediate)",
        [("                    denominator = denominator + torch.exp(sim(out[i], out[m]) / tau)\n",
          "                    denominator = denominator + torch.exp(sim(out[i], out[m]) / tau).float()\n")]),
    "positives_float32_norms": (
        "the positive pairs' norms computed in float32 (a float32 intermediate)",
        [("    denominator = out_left.norm(dim=1, keepdim=True) * out_right.norm(dim=1, keepdim=True)\n",
          "    denominator = (out_left.float().norm(dim=1, keepdim=True)\n"
          "                   * out_right.float().norm(dim=1, keepdim=True))\n")]),
    "train_one_pass_of_2n": (
        "one pass of the model over the 2N stacked views, split back into the two halves "
        "(SimCLR's own code)",
        [("        _, out_left = model(x_i)\n        _, out_right = model(x_j)\n",
          "        _, out = model(torch.cat([x_i, x_j]))\n"
          "        out_left, out_right = out.chunk(2)\n")]),
    "positives_normalize_first": (
        "sim_positive_pairs normalises the rows first (F.normalize), then an einsum",
        [("    numerator = (out_left * out_right).sum(dim=1, keepdim=True)\n"
          "    denominator = out_left.norm(dim=1, keepdim=True) * out_right.norm(dim=1, "
          "keepdim=True)\n"
          "    pos_pairs = numerator / denominator\n",
          "    left, right = F.normalize(out_left, dim=1), F.normalize(out_right, dim=1)\n"
          "    pos_pairs = torch.einsum('nd,nd->n', left, right)[:, None]\n")]),
    "sim_matrix_outer_norms": (
        "compute_sim_matrix divides the Gram matrix by the outer product of the norms",
        [("    normed = out / out.norm(dim=1, keepdim=True)\n"
          "    sim_matrix = normed @ normed.T\n",
          "    norms = out.norm(dim=1, keepdim=True)  # (2N, 1)\n"
          "    sim_matrix = torch.mm(out, out.t()) / (norms * norms.t())\n")]),
    "vectorized_cross_entropy": (
        "the vectorized loss as a cross-entropy over the similarity logits with the "
        "diagonal set to -inf (log-softmax instead of exp and log)",
        [("    exponential = torch.exp(sim_matrix / tau)\n"
          "    off_diagonal = ~torch.eye(2 * N, dtype=torch.bool, device=device)\n"
          "    denom = exponential.masked_select(off_diagonal).view(2 * N, 2 * N - 1).sum(dim=1,\n"
          "                                                                            "
          "keepdim=True)\n"
          "    sim_pairs = sim_positive_pairs(out_left, out_right)              # (N, 1)\n"
          "    numerator = torch.exp(torch.cat([sim_pairs, sim_pairs], dim=0) / tau)  # (2N, 1)\n"
          "    loss = -torch.log(numerator / denom).mean()\n",
          "    self_mask = torch.eye(2 * N, dtype=torch.bool, device=device)\n"
          "    logits = (sim_matrix / tau).masked_fill(self_mask, float('-inf'))\n"
          "    targets = torch.cat([torch.arange(N, 2 * N), torch.arange(N)]).to(device)\n"
          "    loss = F.cross_entropy(logits, targets)\n")]),
    "vectorized_subtract_diagonal": (
        "the vectorized loss sums whole rows and subtracts the diagonal's own terms; the "
        "positives are read from the matrix's N-th off-diagonals",
        [("    denom = exponential.masked_select(off_diagonal).view(2 * N, 2 * N - 1).sum(dim=1,\n"
          "                                                                            "
          "keepdim=True)\n"
          "    sim_pairs = sim_positive_pairs(out_left, out_right)              # (N, 1)\n"
          "    numerator = torch.exp(torch.cat([sim_pairs, sim_pairs], dim=0) / tau)  # (2N, 1)\n",
          "    denom = (exponential.sum(dim=1) - exponential.diagonal())[:, None]\n"
          "    positives = torch.cat([sim_matrix.diagonal(N), sim_matrix.diagonal(-N)])\n"
          "    numerator = torch.exp(positives / tau)[:, None]\n")]),
    "train_set_to_none": (
        "train clears the gradients (set_to_none) before the forward pass instead of "
        "after it",
        [("        _, out_left = model(x_i)\n"
          "        _, out_right = model(x_j)\n"
          "        loss = simclr_loss_vectorized(out_left, out_right, temperature, device=device)\n"
          "        train_optimizer.zero_grad()\n",
          "        train_optimizer.zero_grad(set_to_none=True)\n"
          "        _, out_left = model(x_i)\n"
          "        _, out_right = model(x_j)\n"
          "        loss = simclr_loss_vectorized(out_left, out_right, temperature, device=device)\n")]),
    "knn_one_hot": (
        "kNN votes with one-hot labels times the weights, summed over the neighbours "
        "(the source's way)",
        [("    scores = torch.zeros(features.shape[0], classes, dtype=weights.dtype,\n"
          "                         device=features.device)\n"
          "    scores.scatter_add_(1, labels, weights)\n",
          "    one_hot = F.one_hot(labels, classes).to(weights.dtype)        # (B, k, C)\n"
          "    scores = (one_hot * weights.unsqueeze(-1)).sum(dim=1)\n")]),
}

"""Known mistakes in `simclr`, each a small edit of the reference solution.

MUTANTS = {name: (what the student probably did, [(text in the solution, replacement)])}.
Each text must occur exactly once in solutions/simclr.py. Fixtures store the outputs of every
mistake so the grader can name it; tests grade each one and expect lost points.
"""
MUTANTS = {
    "jitter_always": (
        "the colour jitter is applied with probability 1 instead of 0.8",
        [("generator=g), p=0.8, generator=g)", "generator=g), p=1.0, generator=g)")]),
    "probabilities_swapped": (
        "the probabilities are swapped: jitter with p = 0.2 and grayscale with p = 0.8 "
        "(jitter 0.8, grayscale 0.2)",
        [("generator=g), p=0.8, generator=g)", "generator=g), p=0.2, generator=g)"),
         ("T.RandomGrayscale(0.2, generator=g)", "T.RandomGrayscale(0.8, generator=g)")]),
    "no_normalize": (
        "the augmentation does not normalise the views with mean and std",
        [("        T.Normalize(mean, std),\n    ])", "    ])")]),
    "pair_same_view": (
        "PairDataset returns the same view twice: call the transform once per view",
        [("x_j = self.transform(img)", "x_j = x_i")]),
    "sim_not_normalized": (
        "sim returns the plain dot product: divide by the two vectors' norms",
        [("norm_dot_product = torch.dot(z_i, z_j) / (torch.linalg.norm(z_i) * "
          "torch.linalg.norm(z_j))", "norm_dot_product = torch.dot(z_i, z_j)")]),
    "naive_skips_positive": (
        "the naive loss's denominator leaves out the positive j instead of z_i itself",
        [("                if m != i:", "                if m != j:")]),
    "naive_leaves_out_positive": (
        "the naive loss's denominator leaves out the positive pair: it sums over every k != i, "
        "the positive included (with N = 1 the positive is its only term, and without it the "
        "loss is NaN or Inf)",
        [("                if m != i:", "                if m != i and m != j:")]),
    "sim_matrix_normalizes_in_place": (
        "changes its input in place",
        [("    normed = out / out.norm(dim=1, keepdim=True)\n    sim_matrix = normed @ normed.T\n",
          "    out /= out.norm(dim=1, keepdim=True)\n    sim_matrix = out @ out.T\n")]),
    "naive_denominator_detached": (
        "the naive loss's denominators are Python numbers (.item()): the value is right, but no "
        "gradient flows through them, so training only pulls the positives together",
        [("                    denominator = denominator + torch.exp(sim(out[i], out[m]) / tau)\n",
          "                    denominator = denominator + torch.exp(sim(out[i], out[m]) / tau).item()\n")]),
    "vectorized_denominator_detached": (
        "the vectorized loss's denominators are detached: the value is right, but no gradient "
        "flows through them, so training only pulls the positives together",
        [("denom = exponential.masked_select(off_diagonal).view(2 * N, 2 * N - 1).sum(dim=1,\n"
          "                                                                            "
          "keepdim=True)",
          "denom = exponential.masked_select(off_diagonal).view(2 * N, 2 * N - 1).sum(dim=1,\n"
          "                                                                            "
          "keepdim=True).detach()")]),
    "vectorized_skips_positive": (
        "the vectorized loss's denominator leaves out the positive pair (it is one of the "
        "k != i terms)",
        [("loss = -torch.log(numerator / denom).mean()",
          "loss = -torch.log(numerator / (denom - numerator)).mean()")]),
    "vectorized_mask_on_cpu": (
        "made a tensor on the CPU while its inputs are on another device",
        [("off_diagonal = ~torch.eye(2 * N, dtype=torch.bool, device=device)",
          "off_diagonal = ~torch.eye(2 * N, dtype=torch.bool)")]),
    "knn_votes_on_cpu": (
        "made a tensor on the CPU while its inputs are on another device",
        [("    scores = torch.zeros(features.shape[0], classes, dtype=weights.dtype,\n"
          "                         device=features.device)\n",
          "    scores = torch.zeros(features.shape[0], classes, dtype=weights.dtype)\n")]),
    "naive_mean_over_n": (
        "the naive loss is divided by N instead of 2N",
        [("total_loss = total_loss / (2 * N)", "total_loss = total_loss / N")]),
    "positives_squeezed": (
        "sim_positive_pairs squeezes its result, so one pair comes back with shape (1,) "
        "instead of (1, 1)",
        [("pos_pairs = numerator / denominator",
          "pos_pairs = (numerator / denominator).squeeze().unsqueeze(-1)")]),
    "sim_matrix_not_normalized": (
        "compute_sim_matrix multiplies the raw rows: normalise them to unit length first",
        [("normed = out / out.norm(dim=1, keepdim=True)", "normed = out")]),
    "temperature_twice": (
        "the vectorized loss divides by the temperature twice",
        [("exponential = torch.exp(sim_matrix / tau)",
          "exponential = torch.exp(sim_matrix / tau / tau)"),
         ("numerator = torch.exp(torch.cat([sim_pairs, sim_pairs], dim=0) / tau)",
          "numerator = torch.exp(torch.cat([sim_pairs, sim_pairs], dim=0) / tau / tau)")]),
    "diagonal_in_denominator": (
        "the vectorized loss keeps the diagonal (k = i) in the denominator",
        [("denom = exponential.masked_select(off_diagonal).view(2 * N, 2 * N - 1).sum(dim=1,\n"
          "                                                                            "
          "keepdim=True)", "denom = exponential.sum(dim=1, keepdim=True)")]),
    "positive_counted_twice": (
        "the vectorized loss adds the positive to the denominator again (it is already "
        "among the k != i terms)",
        [("loss = -torch.log(numerator / denom).mean()",
          "loss = -torch.log(numerator / (denom + numerator)).mean()")]),
    "vectorized_mean_over_n": (
        "the vectorized loss averages over N instead of the 2N views",
        [("loss = -torch.log(numerator / denom).mean()",
          "loss = -torch.log(numerator / denom).sum() / N")]),
    "train_on_features": (
        "train computes the loss on the encoder features h instead of the projections z "
        "(the model's second output)",
        [("_, out_left = model(x_i)\n        _, out_right = model(x_j)",
          "out_left, _ = model(x_i)\n        out_right, _ = model(x_j)")]),
    "train_no_zero_grad": (
        "train never clears the gradients, so they accumulate over the batches",
        [("        train_optimizer.zero_grad()\n        loss.backward()",
          "        loss.backward()")]),
    "train_fixed_temperature": (
        "train uses the temperature 0.5 instead of its temperature argument",
        [("loss = simclr_loss_vectorized(out_left, out_right, temperature, device=device)",
          "loss = simclr_loss_vectorized(out_left, out_right, 0.5, device=device)")]),
    "knn_unweighted": (
        "the kNN votes are not weighted by exp(similarity / temperature): plain majority",
        [("weights = torch.exp(weights / temperature)", "weights = torch.ones_like(weights)")]),
    "knn_temperature_multiplied": (
        "the kNN weights multiply the similarity by the temperature instead of dividing",
        [("weights = torch.exp(weights / temperature)",
          "weights = torch.exp(weights * temperature)")]),
    "sim_cosine_similarity": (
        "uses torch.nn.functional.cosine_similarity, which this part asks you to write",
        [("norm_dot_product = torch.dot(z_i, z_j) / (torch.linalg.norm(z_i) * "
          "torch.linalg.norm(z_j))",
          "norm_dot_product = F.cosine_similarity(z_i, z_j, dim=0)")]),
}

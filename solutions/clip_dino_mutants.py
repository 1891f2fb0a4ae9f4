"""Known mistakes in `clip_dino`, each a small edit of the reference solution.

MUTANTS = {name: (what the student probably did, [(text in the solution, replacement)])}.
Each text must occur exactly once in solutions/clip_dino.py. Fixtures store the outputs of
every mistake so the grader can name it; tests grade each one and expect lost points.
"""
MUTANTS = {
    "similarity_not_normalized": (
        "the similarity is the plain dot product: normalise the rows to unit length first",
        [("    text = text_features / text_features.norm(dim=-1, keepdim=True)\n"
          "    image = image_features / image_features.norm(dim=-1, keepdim=True)\n",
          "    text, image = text_features, image_features\n")]),
    "similarity_transposed": (
        "the similarity matrix is (M, N), images by texts: texts are the rows",
        [("similarity = text @ image.T", "similarity = image @ text.T")]),
    "loss_one_direction": (
        "the contrastive loss uses only the image-to-text cross-entropy; CLIP's loss is "
        "symmetric (the mean of both directions)",
        [("loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2",
          "loss = F.cross_entropy(logits, labels)")]),
    "loss_scale_not_exponentiated": (
        "the logits are multiplied by logit_scale itself; it is the log of the inverse "
        "temperature, so multiply by logit_scale.exp()",
        [("logits = logit_scale.exp() * similarity", "logits = logit_scale * similarity")]),
    "loss_scale_detached": (
        "the temperature gets no gradient (logit_scale is detached): it must be learnable",
        [("logits = logit_scale.exp() * similarity",
          "logits = logit_scale.detach().exp() * similarity")]),
    "loss_sum_of_directions": (
        "the contrastive loss adds the two cross-entropies instead of averaging them",
        [("loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2",
          "loss = F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)")]),
    "zero_shot_wrong_axis": (
        "zero-shot takes the argmax over the images instead of over the classes, so it "
        "returns one answer per class",
        [("similarity.argmax(dim=0)", "similarity.argmax(dim=1)")]),
    "zero_shot_softmax_over_images": (
        "zero-shot takes a softmax over the images (dim=1) before the argmax over the "
        "classes: each image's scores must be compared across classes, not across images",
        [("similarity.argmax(dim=0)", "(100 * similarity).softmax(dim=1).argmax(dim=0)")]),
    "retrieve_least_similar": (
        "retrieve returns the least similar images (topk with largest=False, or an "
        "ascending sort)",
        [("indices = similarity.topk(k).indices.tolist()",
          "indices = similarity.topk(k, largest=False).indices.tolist()")]),
    "retrieve_unnormalized_gallery": (
        "the gallery's image features are not normalised, so images of larger norm "
        "rank first",
        [("self.image_features = features / features.norm(dim=-1, keepdim=True)  # (M, E)",
          "self.image_features = features")]),
    "retrieve_encodes_gallery_each_query": (
        "retrieve encodes the whole gallery again for every query: encode it once in "
        "__init__",
        [("        text = text / text.norm(dim=-1, keepdim=True)                     # (1, E)\n",
          "        text = text / text.norm(dim=-1, keepdim=True)                     # (1, E)\n"
          "        self.image_features = self.image_features / self.image_features.norm(\n"
          "            dim=-1, keepdim=True) + 0 * self.clip_model.encode_image(\n"
          "            torch.zeros(1, 3, 32, 32, device=self.device)).sum()\n")]),
    "dino_no_centering": (
        "the teacher's outputs are not centred: subtract the centre before sharpening",
        [("F.softmax((teacher_output - center) / teacher_temp, dim=-1)",
          "F.softmax(teacher_output / teacher_temp, dim=-1)")]),
    "dino_no_sharpening": (
        "the teacher uses the student's temperature: its sharper temperature teacher_temp "
        "is what prevents collapse to a uniform output",
        [("F.softmax((teacher_output - center) / teacher_temp, dim=-1)",
          "F.softmax((teacher_output - center) / student_temp, dim=-1)")]),
    "dino_same_view_pairs": (
        "the DINO loss also compares each view with itself (s == t); only pairs of "
        "different views count",
        [("            if s == t:\n"
          "                continue  # the same crop: nothing to learn from matching it\n", "")]),
    "dino_teacher_gets_gradient": (
        "the teacher's probabilities are not detached, so the loss sends gradients into "
        "the teacher; it must learn only through the EMA",
        [("F.softmax((teacher_output - center) / teacher_temp, dim=-1).detach()",
          "F.softmax((teacher_output - center) / teacher_temp, dim=-1)")]),
    "dino_softmax_over_batch": (
        "the softmaxes run over the batch (dim=1) instead of the K prototypes (dim=-1)",
        [("F.softmax((teacher_output - center) / teacher_temp, dim=-1)",
          "F.softmax((teacher_output - center) / teacher_temp, dim=1)"),
         ("F.log_softmax(student_output / student_temp, dim=-1)",
          "F.log_softmax(student_output / student_temp, dim=1)")]),
    "center_momentum_swapped": (
        "the centre update weighs the batch mean by momentum and the old centre by "
        "1 - momentum (the other way round)",
        [("new_center = center * momentum + batch_center * (1 - momentum)",
          "new_center = center * (1 - momentum) + batch_center * momentum")]),
    "ema_momentum_swapped": (
        "the EMA weighs the student by momentum and the teacher by 1 - momentum: the "
        "teacher must move slowly",
        [("p_teacher.mul_(momentum).add_(p_student.detach(), alpha=1 - momentum)",
          "p_teacher.mul_(1 - momentum).add_(p_student.detach(), alpha=momentum)")]),
    "ema_updates_student": (
        "the EMA step updates the student towards the teacher instead of the teacher "
        "towards the student",
        [("p_teacher.mul_(momentum).add_(p_student.detach(), alpha=1 - momentum)",
          "p_student.mul_(momentum).add_(p_teacher.detach(), alpha=1 - momentum)")]),
    "segmentation_argmax_over_patches": (
        "inference takes the argmax over the patches (dim=0) instead of over the classes, "
        "so it returns one patch index per class instead of one class per patch",
        [("pred_classes = self.model(X_test).argmax(dim=-1)",
          "pred_classes = self.model(X_test).argmax(dim=0)")]),
    "segmentation_returns_scores": (
        "inference returns the classifier's scores (P, C) instead of the class labels: "
        "take the argmax over the classes",
        [("pred_classes = self.model(X_test).argmax(dim=-1)",
          "pred_classes = self.model(X_test)")]),
    "similarity_normalises_in_place": (
        "changes its input in place",
        [("    text = text_features / text_features.norm(dim=-1, keepdim=True)\n",
          "    text = text_features.div_(text_features.norm(dim=-1, keepdim=True))\n")]),
    "clip_labels_on_cpu": (
        "made a tensor on the CPU while its inputs are on another device",
        [("labels = torch.arange(len(logits), device=logits.device)",
          "labels = torch.arange(len(logits))")]),
    "segmentation_ignores_num_iters": (
        "train runs a fixed number of steps (500) whatever num_iters says",
        [("        for _ in range(num_iters):\n", "        for _ in range(500):\n")]),
    "segmentation_batchnorm_left_training": (
        "the classifier has a BatchNorm layer and inference leaves it in training mode: it "
        "then normalises with the batch's own statistics (and fails on a single patch); call "
        "self.model.eval() first",
        [("        self.model = nn.Sequential(nn.Linear(inp_dim, 256), nn.ReLU(),\n",
          "        self.model = nn.Sequential(nn.Linear(inp_dim, 256), nn.BatchNorm1d(256), "
          "nn.ReLU(),\n"),
         ("        self.model.eval()\n        pred_classes", "        pred_classes")]),
    "segmentation_never_steps": (
        "train computes the loss and its gradients but never calls optimizer.step(), so "
        "the classifier stays at its random initialisation",
        [("            self.optimizer.step()\n", "")]),
}

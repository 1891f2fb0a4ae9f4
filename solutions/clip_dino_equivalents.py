"""Correct implementations of `clip_dino` written another way, as students write them.

EQUIVALENTS = {name: (how it differs, [(text in the solution, replacement)])}, the format of
clip_dino_mutants.py. Each must score 100% on the public and the autograder sets, and
`python -m grader audit clip_dino` shows how far inside the tolerances they stay.
"""
EQUIVALENTS = {
    "similarity_f_normalize_einsum": (
        "F.normalize on both, then an einsum",
        [("    text = text_features / text_features.norm(dim=-1, keepdim=True)\n"
          "    image = image_features / image_features.norm(dim=-1, keepdim=True)\n"
          "    similarity = text @ image.T\n",
          "    similarity = torch.einsum('nd,md->nm', F.normalize(text_features, dim=-1),\n"
          "                              F.normalize(image_features, dim=-1))\n")]),
    "similarity_divide_outer_norms": (
        "the Gram matrix divided by the outer product of the norms",
        [("    text = text_features / text_features.norm(dim=-1, keepdim=True)\n"
          "    image = image_features / image_features.norm(dim=-1, keepdim=True)\n"
          "    similarity = text @ image.T\n",
          "    norms = text_features.norm(dim=1)[:, None] * image_features.norm(dim=1)[None, :]\n"
          "    similarity = (text_features @ image_features.T) / norms\n")]),
    "loss_log_softmax_by_hand": (
        "the two cross-entropies written with log_softmax over both axes and the diagonal",
        [("    labels = torch.arange(len(logits), device=logits.device)\n"
          "    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2\n",
          "    per_image = -F.log_softmax(logits, dim=1).diagonal().mean()\n"
          "    per_text = -F.log_softmax(logits, dim=0).diagonal().mean()\n"
          "    loss = 0.5 * per_image + 0.5 * per_text\n")]),
    "loss_texts_first": (
        "logits built texts by images (the transpose), temperature as a division by "
        "exp(-logit_scale)",
        [("    similarity = get_similarity_no_loop(image_features, text_features)  # (B images, "
          "B texts)\n"
          "    logits = logit_scale.exp() * similarity\n",
          "    logits = (get_similarity_no_loop(text_features, image_features)\n"
          "              / torch.exp(-logit_scale)).T\n")]),
    "zero_shot_softmax_probabilities": (
        "zero-shot turns the similarities into probabilities over the classes (softmax "
        "over dim 0, scaled by 100 as CLIP does) before the argmax, image by image in a loop",
        [("    pred_classes = [class_texts[i] for i in similarity.argmax(dim=0).tolist()]\n",
          "    probs = (100.0 * similarity).softmax(dim=0)\n"
          "    pred_classes = []\n"
          "    for j in range(probs.shape[1]):\n"
          "        pred_classes.append(class_texts[int(probs[:, j].argmax())])\n")]),
    "retrieve_argsort": (
        "retrieve sorts all similarities in descending order and keeps the first k",
        [("        text = text / text.norm(dim=-1, keepdim=True)                     # (1, E)\n"
          "        similarity = (self.image_features @ text.T).squeeze(1)             # (M,)\n"
          "        indices = similarity.topk(k).indices.tolist()\n",
          "        similarity = get_similarity_no_loop(text, self.image_features)[0]\n"
          "        indices = [int(i) for i in torch.argsort(similarity, descending=True)[:k]]\n")]),
    "dino_loss_vectorized_mask": (
        "the DINO loss as one einsum over all (t, s) pairs and a mask without the diagonal",
        [("    total, pairs = 0.0, 0\n"
          "    for t in range(len(teacher_probs)):\n"
          "        for s in range(len(student_log_probs)):\n"
          "            if s == t:\n"
          "                continue  # the same crop: nothing to learn from matching it\n"
          "            total = total + (-teacher_probs[t] * student_log_probs[s]).sum(dim=-1).mean()\n"
          "            pairs += 1\n"
          "    loss = total / pairs\n",
          "    cross = -torch.einsum('tbk,sbk->ts', teacher_probs, student_log_probs)\n"
          "    cross = cross / teacher_probs.shape[1]\n"
          "    keep = ~torch.eye(cross.shape[0], cross.shape[1], dtype=torch.bool,\n"
          "                      device=cross.device)\n"
          "    loss = cross[keep].mean()\n")]),
    "center_mean_two_axes": (
        "the batch centre as mean(dim=(0, 1)) and torch.lerp for the moving average",
        [("    batch_center = teacher_output.reshape(-1, teacher_output.shape[-1]).mean(dim=0,\n"
          "                                                                           keepdim=True)\n"
          "    new_center = center * momentum + batch_center * (1 - momentum)\n",
          "    batch_center = teacher_output.mean(dim=(0, 1))[None]\n"
          "    new_center = torch.lerp(center, batch_center, 1 - momentum)\n")]),
    "ema_state_dict_copy": (
        "the EMA computed out of place and copied back with .data.copy_",
        [("    for p_teacher, p_student in zip(teacher.parameters(), student.parameters()):\n"
          "        p_teacher.mul_(momentum).add_(p_student.detach(), alpha=1 - momentum)\n",
          "    for p_teacher, p_student in zip(teacher.parameters(), student.parameters()):\n"
          "        new = momentum * p_teacher.detach() + (1 - momentum) * p_student.detach()\n"
          "        p_teacher.data.copy_(new)\n")]),
    "similarity_float32_norms": (
        "the row norms computed in float32 (a float32 intermediate in a float64 computation)",
        [("    text = text_features / text_features.norm(dim=-1, keepdim=True)\n"
          "    image = image_features / image_features.norm(dim=-1, keepdim=True)\n",
          "    text = text_features / text_features.float().norm(dim=-1, keepdim=True)\n"
          "    image = image_features / image_features.float().norm(dim=-1, keepdim=True)\n")]),
    "dino_float32_temperatures": (
        "the temperatures as float32 tensors, torch.tensor(teacher_temp) (float32 constants)",
        [("    teacher_probs = F.softmax((teacher_output - center) / teacher_temp, dim=-1).detach()\n"
          "    student_log_probs = F.log_softmax(student_output / student_temp, dim=-1)\n",
          "    teacher_probs = F.softmax((teacher_output - center) / torch.tensor(teacher_temp),\n"
          "                              dim=-1).detach()\n"
          "    student_log_probs = F.log_softmax(student_output / torch.tensor(student_temp), dim=-1)\n")]),
    "segmentation_batchnorm_eval": (
        "a BatchNorm layer in the classifier, switched to evaluation mode for inference",
        [("        self.model = nn.Sequential(nn.Linear(inp_dim, 256), nn.ReLU(),\n",
          "        self.model = nn.Sequential(nn.Linear(inp_dim, 256), nn.BatchNorm1d(256), "
          "nn.ReLU(),\n")]),
    "segmentation_linear_adam": (
        "a linear classifier trained with Adam and L2 weight decay",
        [("        self.model = nn.Sequential(nn.Linear(inp_dim, 256), nn.ReLU(),\n"
          "                                   nn.Linear(256, num_classes)).to(device)\n"
          "        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3,\n"
          "                                           weight_decay=1e-2)\n",
          "        self.model = nn.Linear(inp_dim, num_classes).to(device)\n"
          "        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-2,\n"
          "                                          weight_decay=1e-4)\n")]),
    "segmentation_sgd_softmax_loop": (
        "a wider MLP trained with SGD and momentum on softmax probabilities (NLL of their "
        "log), predicting with the most probable class",
        [("        self.model = nn.Sequential(nn.Linear(inp_dim, 256), nn.ReLU(),\n"
          "                                   nn.Linear(256, num_classes)).to(device)\n"
          "        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3,\n"
          "                                           weight_decay=1e-2)\n",
          "        self.model = nn.Sequential(nn.Linear(inp_dim, 512), nn.GELU(),\n"
          "                                   nn.Linear(512, num_classes)).to(device)\n"
          "        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05,\n"
          "                                         momentum=0.9, weight_decay=1e-3)\n"),
         ("            loss = F.cross_entropy(self.model(X_train), Y_train)\n",
          "            log_probs = self.model(X_train).softmax(dim=-1).clamp_min(1e-12).log()\n"
          "            loss = F.nll_loss(log_probs, Y_train)\n"),
         ("        pred_classes = self.model(X_test).argmax(dim=-1)\n",
          "        probs = self.model(X_test).softmax(dim=1)\n"
          "        pred_classes = probs.max(dim=1).indices\n")]),
}

"""Expected values of the `clip_dino` cases that do not come from the reference: the
similarity, CLIP's symmetric InfoNCE, DINO's loss, the centre and the EMA step from their
formulas (written independently of the reference, in float64), the source's printed
similarities, and the separable patches' own labels.

Instructor side only: used by the fixture generator and the audit (and, through
`grader.authoring.oracle_module`, by the classifier case's input builder, which runs in the
instructor's process), never shipped to students and never importable inside the sandbox.
"""
import torch

from grader.suites.clip_dino import (BATCH, CLASSIFIER_SETS, SOURCE_SIMILARITY, TEACHER_VIEWS,
                                     clip_loss_outputs, dino_outputs)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, D), (M, D) -> (N, M), entry by entry from the definition."""
    dots = (a[:, None, :] * b[None, :, :]).sum(-1)
    return dots / (a.norm(dim=-1)[:, None] * b.norm(dim=-1)[None, :])


def similarity_expected(x):
    return {"source": SOURCE_SIMILARITY.clone(),
            "spread_norms": cosine_matrix(x["text"], x["image"]),
            "one_text": cosine_matrix(x["one_text"], x["image"])}


def infonce(image: torch.Tensor, text: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """The mean of the image->text and text->image cross-entropies, with log-sum-exps."""
    logits = log_scale.exp() * cosine_matrix(image, text)
    diagonal = logits.diagonal()
    images_to_texts = (logits.logsumexp(dim=1) - diagonal).mean()
    texts_to_images = (logits.logsumexp(dim=0) - diagonal).mean()
    return (images_to_texts + texts_to_images) / 2


def clip_loss_expected(x):
    return clip_loss_outputs(infonce, x)


def dino_reference_loss(student, teacher, center, student_temp=0.1, teacher_temp=0.04):
    """sum over pairs (t, s != t) of the batch-mean cross-entropy, over the pair count,
    with the distributions written out from exp (no softmax helpers)."""
    shifted = (teacher - center) / teacher_temp
    shifted = shifted - shifted.max(dim=-1, keepdim=True).values
    p_teacher = shifted.exp() / shifted.exp().sum(-1, keepdim=True)          # (Vt, B, K)
    logits = student / student_temp
    log_p_student = logits - logits.logsumexp(dim=-1, keepdim=True)           # (V, B, K)
    cross = -torch.einsum("tbk,sbk->tsb", p_teacher, log_p_student).mean(-1)  # (Vt, V)
    keep = ~torch.eye(len(teacher), len(student), dtype=torch.bool)
    return cross[keep].mean()


def dino_expected(x):
    out = dino_outputs(dino_reference_loss, x)
    out["teacher_gets_no_gradient"] = torch.tensor(True)
    return out


def center_expected(x):
    mean = x["teacher"].sum(dim=(0, 1)) / (TEACHER_VIEWS * BATCH)
    return {"default": 0.9 * x["center"] + 0.1 * mean[None],
            "momentum_0_7": 0.7 * x["center"] + 0.3 * mean[None],
            "center_unchanged": torch.tensor(True)}


def ema_expected(x):
    out = {}
    for name, m in (("default", 0.996), ("momentum_0_9", 0.9)):
        out[name] = {k.replace(".", "_"): m * x["teacher"][k] + (1 - m) * x["student"][k]
                     for k in x["teacher"]}
        out[f"{name}_student"] = {k.replace(".", "_"): v.clone()
                                  for k, v in x["student"].items()}
    return out


def nearest_class_mean(x_train, y_train, x_test) -> torch.Tensor:
    """The label of the training class whose mean feature is closest to each test patch."""
    means = torch.stack([x_train[y_train == c].mean(0) for c in range(int(y_train.max()) + 1)])
    return torch.cdist(x_test.double(), means.double()).argmin(dim=1)


def classifier_expected(x):
    """The clusters' own labels (their nearest training class mean), which the inputs do not
    carry; the first patch's alone; 0 training steps change no prediction."""
    out = {}
    for name in CLASSIFIER_SETS:
        labels = nearest_class_mean(x[name]["X_train"], x[name]["Y_train"], x[name]["X_test"])
        out.update({name: labels, f"{name}_one_patch": labels[:1],
                    f"{name}_zero_steps_change_nothing": torch.tensor(True)})
    return out


ORACLES = {
    "clip/similarity": similarity_expected,
    "clip/contrastive_loss": clip_loss_expected,
    "dino/loss": dino_expected,
    "dino/update_center": center_expected,
    "dino/ema_update": ema_expected,
    "segmentation/train_and_infer": classifier_expected,
}

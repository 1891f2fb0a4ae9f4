"""CLIP and DINO: image-text contrastive learning, zero-shot classification, retrieval, and
segmentation from self-distilled patch features.

CLIP trains an image encoder and a text encoder together so that a picture and its caption
get similar unit vectors, and the pictures and captions of other pairs in the batch get
dissimilar ones. Afterwards any text can act as a classifier ("a red circle", "a square"):
the class whose text is most similar to an image wins, with no training on those classes
(zero-shot). DINO trains a vision transformer without any text or label: a student network
learns to match the output of a teacher (an exponential moving average of the student) on
other crops of the same image. Its patch features separate objects well enough that a tiny
per-patch classifier, fit on a single annotated frame, segments the rest of a video.

You write:

1. `get_similarity_no_loop`: cosine similarities of every text with every image;
2. `clip_contrastive_loss`: the symmetric InfoNCE loss with a learnable temperature;
3. `clip_zero_shot_classifier` and `CLIPImageRetriever.retrieve`;
4. the DINO parts: `dino_loss` (teacher centring and sharpening, cross-entropy between
   teacher and student over pairs of different views), `update_center` and the EMA
   teacher update `ema_update`;
5. `DINOSegmentation`: a light per-patch classifier with its training loop and inference.

`compute_iou` is given. The small models (`dlkit/clip_dino_models.py`) and their training
loops are given; they call your loss functions.

Conventions used everywhere in this file:
- Feature vectors are rows: (N, D). Cosine similarity is u.v / (|u| |v|).
- A CLIP model exposes `encode_image(images (B, 3, S, S)) -> (B, E)`,
  `encode_text(tokens (B, T)) -> (B, E)` and `tokenize(list of str) -> (B, T)` long; a
  preprocess transform maps one uint8 image (H, W, 3) to a float tensor (3, S, S).
- DINO outputs are (V, B, K): V views of B images, K prototype scores; the teacher sees the
  first two (global) views, the student sees all of them, and view v is the same crop for
  both.
- New tensors are made on the device of the inputs; nothing calls `.cuda()`.

Run `make grade A=clip_dino` to score this file; `notebooks/clip_dino.ipynb` walks through it.
"""
import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------
# Part 1. CLIP: similarities and the contrastive loss
# ---------------------------------------------------------------------------------------


def get_similarity_no_loop(text_features: torch.Tensor,
                           image_features: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every text with every image, without any Python loop.

    text_features: (N, D); image_features: (M, D). Returns (N, M): entry (i, j) is the
    cosine similarity of text i and image j (normalise the rows to unit L2 norm first, in
    new tensors: the caller's features are left as they are).

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.cosine_similarity`, `torch.cosine_similarity`,
    `torch.nn.CosineSimilarity`.
    """
    # BEGIN SOLUTION
    # HINT: make every row unit length, then let every text row meet every image row in one
    #       product: (N, D) and (M, D) give (N, M).
    text = text_features / text_features.norm(dim=-1, keepdim=True)
    image = image_features / image_features.norm(dim=-1, keepdim=True)
    similarity = text @ image.T
    # END SOLUTION
    return similarity


def clip_contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                          logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss for a batch of B matching (image, text) pairs.

    image_features, text_features: (B, E), row i of each describing the same pair;
    logit_scale: 0-dim tensor, the *log* of the inverse temperature (CLIP's learnable
    parameter, initialised to log(1 / 0.07)); gradients must flow into it.

    logits[i, j] = exp(logit_scale) * cos(image_i, text_j), an (B, B) matrix whose
    diagonal holds the matching pairs. The loss is the mean of two cross-entropies: each
    image against all texts (rows of logits) and each text against all images (columns),
    each averaged over the batch. Returns a 0-dim tensor on the features' device, whose
    gradient (autograd's) reaches both features and logit_scale.
    """
    # BEGIN SOLUTION
    # HINT: the (B, B) cosine similarities scaled by exp(logit_scale); pair i is the right
    #       answer for row i in both directions (images to texts, texts to images); average the
    #       two cross-entropies.
    similarity = get_similarity_no_loop(image_features, text_features)  # (B images, B texts)
    logits = logit_scale.exp() * similarity
    labels = torch.arange(len(logits), device=logits.device)
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    # END SOLUTION
    return loss


# ---------------------------------------------------------------------------------------
# Part 2. Zero-shot classification and retrieval
# ---------------------------------------------------------------------------------------


def clip_zero_shot_classifier(clip_model, clip_preprocess, images, class_texts, device):
    """The class text most similar to each image, with no training on those classes.

    clip_model: a CLIP model (`tokenize`, `encode_text`, `encode_image`; see the module
    docstring); clip_preprocess: uint8 image (H, W, 3) -> float (3, S, S); images: list of
    uint8 arrays (H, W, 3) (numpy arrays or tensors); class_texts: list of C strings;
    device: where the model is. Returns a list of len(images) strings, each one of
    `class_texts`. Run the encoders without gradients.
    """
    # BEGIN SOLUTION
    # HINT: encode the class texts and the preprocessed images, compare every class with every
    #       image (C, M), and give each image its most similar class.
    tokens = clip_model.tokenize(class_texts).to(device)
    batch = torch.stack([clip_preprocess(image) for image in images]).to(device)
    with torch.no_grad():
        text_features = clip_model.encode_text(tokens)     # (C, E)
        image_features = clip_model.encode_image(batch)    # (M, E)
    similarity = get_similarity_no_loop(text_features, image_features)  # (C, M)
    pred_classes = [class_texts[i] for i in similarity.argmax(dim=0).tolist()]
    # END SOLUTION
    return pred_classes


class CLIPImageRetriever:
    """Text-to-image search over a fixed gallery of images.

    __init__ encodes every image once (and keeps the unit-normalised features); each
    `retrieve(query, k)` then encodes only the query text.
    """

    def __init__(self, clip_model, clip_preprocess, images, device):
        """clip_model, clip_preprocess, device: as in `clip_zero_shot_classifier`;
        images: list of uint8 arrays (H, W, 3), the gallery."""
        self.clip_model, self.device = clip_model, device
        # BEGIN SOLUTION
        # HINT: encode the gallery once, here, without gradients, and keep unit-length features
        #       (M, E).
        batch = torch.stack([clip_preprocess(image) for image in images]).to(device)
        with torch.no_grad():
            features = clip_model.encode_image(batch)
        self.image_features = features / features.norm(dim=-1, keepdim=True)  # (M, E)
        # END SOLUTION

    def retrieve(self, query: str, k: int = 2) -> list:
        """Indices of the k gallery images most similar to the text `query`, most similar
        first (a list of k Python ints)."""
        # BEGIN SOLUTION
        # HINT: encode the query, score every gallery image by cosine similarity (M,), and
        #       return the k best indices, best first, as Python ints.
        with torch.no_grad():
            text = self.clip_model.encode_text(self.clip_model.tokenize([query]).to(self.device))
        text = text / text.norm(dim=-1, keepdim=True)                     # (1, E)
        similarity = (self.image_features @ text.T).squeeze(1)             # (M,)
        indices = similarity.topk(k).indices.tolist()
        # END SOLUTION
        return indices


# ---------------------------------------------------------------------------------------
# Part 3. DINO: the self-distillation loss and the teacher
# ---------------------------------------------------------------------------------------


def dino_loss(student_output: torch.Tensor, teacher_output: torch.Tensor,
              center: torch.Tensor, student_temp: float = 0.1,
              teacher_temp: float = 0.04) -> torch.Tensor:
    """DINO's loss: the student matches the teacher's sharpened, centred distribution on
    every other view.

    student_output: (V, B, K) for V >= 2 views; teacher_output: (V_t, B, K) for the first
    V_t (global) views; center: (1, K), the running mean of the teacher's outputs as
    `update_center` returns it (a (K,) centre broadcasts the same way and gives the same
    loss).

    Teacher: p_t = softmax((teacher_output - center) / teacher_temp) over K, with no
    gradient (the teacher learns only through `ema_update`). Student:
    log p_s = log_softmax(student_output / student_temp) over K. For every teacher view t
    and every student view s != t, the cross-entropy sum_K -p_t log p_s averaged over the
    batch; the loss is the mean over those V_t * (V - 1) pairs. Returns a 0-dim tensor.
    """
    # BEGIN SOLUTION
    # HINT: teacher distributions: centred, sharpened by teacher_temp, normalised over K, with
    #       no gradient; student log-distributions at student_temp; the cross-entropy of every
    #       (teacher view, different student view) pair, averaged over the batch and over the
    #       pairs.
    teacher_probs = F.softmax((teacher_output - center) / teacher_temp, dim=-1).detach()
    student_log_probs = F.log_softmax(student_output / student_temp, dim=-1)
    total, pairs = 0.0, 0
    for t in range(len(teacher_probs)):
        for s in range(len(student_log_probs)):
            if s == t:
                continue  # the same crop: nothing to learn from matching it
            total = total + (-teacher_probs[t] * student_log_probs[s]).sum(dim=-1).mean()
            pairs += 1
    loss = total / pairs
    # END SOLUTION
    return loss


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_output: torch.Tensor,
                  momentum: float = 0.9) -> torch.Tensor:
    """The new centre: momentum * center + (1 - momentum) * (the mean of the teacher's
    outputs over all views and images). center: (1, K); teacher_output: (V_t, B, K).
    Returns (1, K); `center` itself is left unchanged."""
    # BEGIN SOLUTION
    # HINT: the batch mean over views and images, reshaped to (1, K); then the moving average
    batch_center = teacher_output.reshape(-1, teacher_output.shape[-1]).mean(dim=0,
                                                                           keepdim=True)
    new_center = center * momentum + batch_center * (1 - momentum)
    # END SOLUTION
    return new_center


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float = 0.996) -> None:
    """Move the teacher's parameters towards the student's, in place:
    teacher_p = momentum * teacher_p + (1 - momentum) * student_p for every parameter (in
    the order of `.parameters()`; both modules have the same architecture). The student is
    not changed; nothing here builds a graph.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.optim.swa_utils.AveragedModel`,
    `torch.optim.swa_utils.get_ema_multi_avg_fn`, `torch.optim.swa_utils.get_ema_avg_fn`.
    """
    # BEGIN SOLUTION
    # HINT: every teacher parameter moves, in place and without gradients, to momentum times
    #       itself plus (1 - momentum) times its student counterpart.
    for p_teacher, p_student in zip(teacher.parameters(), student.parameters()):
        p_teacher.mul_(momentum).add_(p_student.detach(), alpha=1 - momentum)
    # END SOLUTION


# ---------------------------------------------------------------------------------------
# Part 4. One-shot segmentation from patch features
# ---------------------------------------------------------------------------------------


class DINOSegmentation:
    """A light per-patch classifier on frozen patch features (the source's design: a
    linear layer or a 2-layer MLP, with weight decay so that it does not overfit the one
    annotated frame it is trained on).

    The classifier and its optimiser are yours to choose. The bounds of the graded
    segmentation were calibrated with a 2-layer MLP (inp_dim -> 256 -> ReLU -> num_classes)
    and AdamW at learning rate 1e-3 and weight decay 1e-2 (500 steps), and also hold for a
    linear layer with Adam and for a wide MLP with SGD; any of these is a safe choice.

    device: where the classifier lives; num_classes: C (class 0 is the background);
    inp_dim: the patch features' width D (384 for DINO ViT-S/8).
    """

    def __init__(self, device, num_classes: int, inp_dim: int = 384):
        self.device, self.num_classes, self.inp_dim = device, num_classes, inp_dim
        # BEGIN SOLUTION
        # HINT: any small classifier from inp_dim features to num_classes scores, on device, and
        #       an optimiser for it (weight decay helps).
        self.model = nn.Sequential(nn.Linear(inp_dim, 256), nn.ReLU(),
                                   nn.Linear(256, num_classes)).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3,
                                           weight_decay=1e-2)
        # END SOLUTION

    def train(self, X_train: torch.Tensor, Y_train: torch.Tensor, num_iters: int = 500):
        """Fit the classifier: X_train (P, D) patch features, Y_train (P,) integer labels in
        0..C-1; exactly `num_iters` full-batch optimisation steps of the cross-entropy (0
        steps leave the classifier as it was)."""
        X_train = X_train.to(self.device, torch.float32)
        Y_train = Y_train.to(self.device, torch.long)
        # BEGIN SOLUTION
        # HINT: num_iters optimisation steps of the classification loss of the patch scores (P,
        #       C) against their labels (P,).
        self.model.train()
        for _ in range(num_iters):
            loss = F.cross_entropy(self.model(X_train), Y_train)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        # END SOLUTION

    @torch.no_grad()
    def inference(self, X_test: torch.Tensor) -> torch.Tensor:
        """Predicted class of each patch: X_test (P, D) -> (P,) int64, for any P (one
        patch included), so layers that behave differently while training (BatchNorm,
        dropout) must be in evaluation mode here."""
        X_test = X_test.to(self.device, torch.float32)
        # BEGIN SOLUTION
        # HINT: the most likely class of every patch: (P,) integer labels.
        self.model.eval()
        pred_classes = self.model(X_test).argmax(dim=-1)
        # END SOLUTION
        return pred_classes


def compute_iou(pred: torch.Tensor, gt: torch.Tensor, num_classes: int) -> float:
    """Mean intersection over union of two label maps of the same shape (given).

    Every class 0..num_classes-1 counts; a class absent from both maps has IoU 1 (nothing to
    find, nothing found)."""
    pred, gt = torch.as_tensor(pred).flatten(), torch.as_tensor(gt).flatten()
    if pred.shape != gt.shape:
        raise ValueError(f"pred has {pred.numel()} labels but gt has {gt.numel()}")
    ious = []
    for c in range(num_classes):
        p, g = pred == c, gt == c
        union = (p | g).sum().item()
        ious.append(1.0 if union == 0 else (p & g).sum().item() / union)
    return sum(ious) / num_classes

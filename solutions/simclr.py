"""SimCLR: learning image features without labels, by contrasting two views of each image.

SimCLR shows a network two random augmentations ("views") of the same image and trains it
so that the two views get similar features while the views of other images in the batch
get dissimilar ones. No label is used. Afterwards the encoder's features are good enough
that a linear classifier (or a k-nearest-neighbour vote) on top of them classifies images
far better than the same classifier on a randomly initialised encoder.

You write:

1. `compute_train_transform`: the SimCLR augmentation, composed from the hand-written
   transforms in `dlkit/simclr_data.py` (imported as `T`); `PairDataset.__getitem__`:
   two views of one image and its label;
2. the contrastive loss: `sim` (cosine similarity of two vectors), `simclr_loss_naive`
   (with loops), then the vectorized pieces `sim_positive_pairs`, `compute_sim_matrix` and
   `simclr_loss_vectorized` (no loops);
3. `train`: one epoch of SimCLR training;
4. `knn_scores`: the weighted k-nearest-neighbour vote used to monitor the features.

The model (`Model`: encoder `f` plus projection head `g`), the feature extraction and the
linear probe are given.

Conventions used everywhere in this file:
- A batch of N images gives 2N views. `out_left` holds the N left views' vectors (rows
  0..N-1 of the stacked batch), `out_right` the N right views' (rows N..2N-1); row k and row
  k + N are the two views of image k (a *positive pair*).
- Vectors are rows: (N, D). Cosine similarity is u.v / (|u| |v|).
- Nothing calls `.cuda()`: new tensors are made on the device of the inputs.
- Inputs are left as they were: normalise into a new tensor (`out / norm`), never in place.

Run `make grade A=simclr` to score this file; `notebooks/simclr.ipynb` walks through it.
"""
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from dlkit import simclr_data as T

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # the source homework's normalisation
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

# ---------------------------------------------------------------------------------------
# Part 1. Two views of every image
# ---------------------------------------------------------------------------------------


def compute_train_transform(seed: int = 123456, size: int = 32, mean=CIFAR10_MEAN,
                            std=CIFAR10_STD, crop_scale=(0.08, 1.0)):
    """The SimCLR augmentation, as one callable: uint8 image (3, H, W) -> float view.

    Compose these transforms from `T` (dlkit/simclr_data.py), in this order, every random
    one drawing from the generator `g` made below (so the views depend only on `seed`):

    1. `T.ToTensor()`: uint8 0..255 -> float in [0, 1];
    2. `T.RandomResizedCrop(size, scale=crop_scale)`: a random box resized to size x size;
    3. `T.RandomHorizontalFlip(0.5)`;
    4. colour jitter `T.ColorJitter(0.4, 0.4, 0.4, 0.1)`, applied with probability 0.8
       (wrap it in `T.RandomApply`);
    5. `T.RandomGrayscale(0.2)`;
    6. `T.Normalize(mean, std)`.

    Pass `generator=g` to every random transform (RandomApply included). Returns a
    `T.Compose` (or any callable doing the same, with the same draws in the same order).
    """
    g = torch.Generator().manual_seed(seed)
    # BEGIN SOLUTION
    # HINT: the docstring's steps, in its order, every one drawing from one generator seeded
    #       with `seed`; the colour jitter and the greyscale apply with their own probabilities.
    train_transform = T.Compose([
        T.ToTensor(),
        T.RandomResizedCrop(size, scale=crop_scale, generator=g),
        T.RandomHorizontalFlip(0.5, generator=g),
        T.RandomApply(T.ColorJitter(0.4, 0.4, 0.4, 0.1, generator=g), p=0.8, generator=g),
        T.RandomGrayscale(0.2, generator=g),
        T.Normalize(mean, std),
    ])
    # END SOLUTION
    return train_transform


class PairDataset(torch.utils.data.Dataset):
    """Images with two random views each (the source's `CIFAR10Pair`).

    images: uint8 (N, 3, H, W); labels: (N,) integers; transform: a callable applied to
    one image (3, H, W). `dataset[i]` is `(x_i, x_j, label)`: two views of image i, made
    by calling the transform twice (x_i first), and its label as a Python int.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        img, target = self.images[index], int(self.labels[index])
        # BEGIN SOLUTION
        # HINT: two independent random views of the same image, then its label.
        x_i = self.transform(img)
        x_j = self.transform(img)
        # END SOLUTION
        return x_i, x_j, target


# ---------------------------------------------------------------------------------------
# Part 2. The contrastive loss
# ---------------------------------------------------------------------------------------


def sim(z_i: torch.Tensor, z_j: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of two vectors z_i, z_j of shape (D,): a 0-dim tensor in [-1, 1].

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.cosine_similarity`, `torch.cosine_similarity`,
    `torch.nn.CosineSimilarity`.
    """
    # BEGIN SOLUTION
    # HINT: the cosine of the angle between the two vectors, as a 0-dim tensor.
    norm_dot_product = torch.dot(z_i, z_j) / (torch.linalg.norm(z_i) * torch.linalg.norm(z_j))
    # END SOLUTION
    return norm_dot_product


def simclr_loss_naive(out_left: torch.Tensor, out_right: torch.Tensor, tau: float):
    """The SimCLR (NT-Xent) loss, with loops over the batch.

    out_left, out_right: (N, D); stacked they are z_0 .. z_{2N-1} (left rows first). For a
    positive pair (i, j):

        l(i, j) = -log( exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau) )

    where k runs over all 2N vectors except i itself (the positive j is included). The loss
    is L = 1 / (2N) * sum_{k=0}^{N-1} [ l(k, k + N) + l(k + N, k) ]. Use `sim`.
    Returns a 0-dim tensor whose gradient (autograd's) is that of this formula: every term,
    the denominators included, stays in the graph.
    """
    N = out_left.shape[0]
    out = torch.cat([out_left, out_right], dim=0)  # (2N, D)
    total_loss = 0
    # BEGIN SOLUTION
    # HINT: for each k: l(k, k + N) and l(k + N, k); the denominator skips only i itself
    for k in range(N):
        for i, j in ((k, k + N), (k + N, k)):
            numerator = torch.exp(sim(out[i], out[j]) / tau)
            denominator = 0
            for m in range(2 * N):
                if m != i:
                    denominator = denominator + torch.exp(sim(out[i], out[m]) / tau)
            total_loss = total_loss - torch.log(numerator / denominator)
    total_loss = total_loss / (2 * N)
    # END SOLUTION
    return total_loss


def sim_positive_pairs(out_left: torch.Tensor, out_right: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each positive pair: row k of out_left with row k of out_right.

    out_left, out_right: (N, D). Returns (N, 1) (keep that shape, also for N = 1).

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.cosine_similarity`, `torch.cosine_similarity`,
    `torch.nn.CosineSimilarity`.
    """
    # BEGIN SOLUTION
    # HINT: the cosine of each row pair, without loops: (N, D) and (N, D) give (N, 1).
    numerator = (out_left * out_right).sum(dim=1, keepdim=True)
    denominator = out_left.norm(dim=1, keepdim=True) * out_right.norm(dim=1, keepdim=True)
    pos_pairs = numerator / denominator
    # END SOLUTION
    return pos_pairs


def compute_sim_matrix(out: torch.Tensor) -> torch.Tensor:
    """All pairwise cosine similarities of the rows of `out` (2N, D): (2N, 2N).

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.cosine_similarity`, `torch.cosine_similarity`,
    `torch.nn.CosineSimilarity`.
    """
    # BEGIN SOLUTION
    # HINT: unit-length rows first; then every pair of rows meets in one product: (2N, D) gives
    #       (2N, 2N).
    normed = out / out.norm(dim=1, keepdim=True)
    sim_matrix = normed @ normed.T
    # END SOLUTION
    return sim_matrix


def simclr_loss_vectorized(out_left: torch.Tensor, out_right: torch.Tensor, tau: float,
                           device=None) -> torch.Tensor:
    """The same loss as `simclr_loss_naive`, without any Python loop.

    Build the denominators from `compute_sim_matrix` of the stacked (2N, D) batch, leaving
    out its diagonal (the k = i terms) without assuming the diagonal's value (the grader
    checks that changing the diagonal changes nothing). The numerators come from
    `sim_positive_pairs`, once for the left rows and once for the right rows.
    device: where new tensors (the mask) go; None means the inputs' device.
    Returns a 0-dim tensor, differentiable like `simclr_loss_naive` (its gradient is the
    formula's: it trains the model).
    """
    device = out_left.device if device is None else device
    N = out_left.shape[0]
    out = torch.cat([out_left, out_right], dim=0)  # (2N, D)
    # BEGIN SOLUTION
    # HINT: denominators: each row's exponentiated similarities (over tau) with every other row,
    #       its own left out; numerators: its positive pair's, for the left rows and the right
    #       rows; average -log of the ratios over the 2N rows.
    sim_matrix = compute_sim_matrix(out)                              # (2N, 2N)
    exponential = torch.exp(sim_matrix / tau)
    off_diagonal = ~torch.eye(2 * N, dtype=torch.bool, device=device)
    denom = exponential.masked_select(off_diagonal).view(2 * N, 2 * N - 1).sum(dim=1,
                                                                            keepdim=True)
    sim_pairs = sim_positive_pairs(out_left, out_right)              # (N, 1)
    numerator = torch.exp(torch.cat([sim_pairs, sim_pairs], dim=0) / tau)  # (2N, 1)
    loss = -torch.log(numerator / denom).mean()
    # END SOLUTION
    return loss


def rel_error(x, y) -> float:
    """max |x - y| / max(1e-8, |x| + |y|), element-wise (the source's check helper)."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    return ((x - y).abs() / (x.abs() + y.abs()).clamp_min(1e-8)).max().item()


# ---------------------------------------------------------------------------------------
# The model (given): encoder f, projection head g
# ---------------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """ResNet-50's block (torchvision's layout and parameter names)."""
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        width, out = planes, planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


def resnet50_encoder(in_channels: int = 3) -> nn.Sequential:
    """ResNet-50 for 32x32 images as SimCLR uses it: a 3x3 stride-1 first convolution, no
    max pooling, no classifier. Indices match the source's `Model.f` (f.0 = conv1, f.1 =
    bn1, f.3..f.6 = layer1..layer4, f.7 = average pooling), so its weights load."""
    layers, inplanes = [], 64
    for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        stage = []
        for b in range(blocks):
            stage.append(Bottleneck(inplanes, planes, stride if b == 0 else 1))
            inplanes = planes * Bottleneck.expansion
        layers.append(nn.Sequential(*stage))
    return nn.Sequential(nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False),
                         nn.BatchNorm2d(64), nn.ReLU(inplace=True), *layers,
                         nn.AdaptiveAvgPool2d(1))


def small_encoder(in_channels: int = 3, width: int = 32) -> nn.Sequential:
    """Three convolutions (two with stride 2) and global average pooling: 4 * width
    features. Used for small images on a CPU."""
    def block(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*block(in_channels, width, 1), *block(width, 2 * width, 2),
                         *block(2 * width, 4 * width, 2), nn.AdaptiveAvgPool2d(1))


class Model(nn.Module):
    """Encoder `f` (image -> feature h) and projection head `g` (h -> z) (given).

    forward(x) returns (h, z), both L2-normalised along their last dimension: h of shape
    (B, feature width) is what downstream tasks use, z of shape (B, feature_dim) is what
    the contrastive loss sees. encoder="resnet50" is the source's model (2048 features);
    encoder="small" is `small_encoder(in_channels, width)`.
    """

    def __init__(self, feature_dim: int = 128, encoder: str = "resnet50", width: int = 32,
                 in_channels: int = 3, hidden: int = 512):
        super().__init__()
        if encoder == "resnet50":
            self.f, features = resnet50_encoder(in_channels), 2048
        elif encoder == "small":
            self.f, features = small_encoder(in_channels, width), 4 * width
        else:
            raise ValueError(f"unknown encoder {encoder!r}: use 'resnet50' or 'small'")
        self.g = nn.Sequential(nn.Linear(features, hidden, bias=False), nn.BatchNorm1d(hidden),
                               nn.ReLU(inplace=True), nn.Linear(hidden, feature_dim, bias=True))

    def forward(self, x):
        feature = torch.flatten(self.f(x), start_dim=1)
        out = self.g(feature)
        return F.normalize(feature, dim=-1), F.normalize(out, dim=-1)


# ---------------------------------------------------------------------------------------
# Part 3. Training
# ---------------------------------------------------------------------------------------


def train(model, data_loader, train_optimizer, epoch: int, epochs: int, batch_size: int = 32,
          temperature: float = 0.5, device=None, progress: bool = True) -> float:
    """One epoch of SimCLR training; returns the mean loss per image.

    For each batch (x_i, x_j, _) of the loader: run the model on both views, compute
    `simclr_loss_vectorized` on the two projections z (the model's second output) with
    `temperature`, and take one optimiser step (clear old gradients first).
    Either way of running the model is accepted: one pass per view (the source's code) or
    one pass over the 2N views stacked (SimCLR's own code), split back into the two halves.
    They differ only through BatchNorm's batch statistics in training mode (N or 2N images):
    the graded epoch uses a model without BatchNorm, and the pretraining reaches its
    threshold either way.
    batch_size: not used (the loader makes the batches, and its last one may be smaller; kept
    from the source's signature); the mean loss weights each batch by its number of images.
    device: where the batches go; None means the model's device.
    """
    model.train()
    device = next(model.parameters()).device if device is None else torch.device(device)
    total_loss, total_num = 0.0, 0
    bar = tqdm(data_loader, disable=not progress, leave=False)
    for x_i, x_j, _ in bar:
        x_i, x_j = x_i.to(device), x_j.to(device)
        # BEGIN SOLUTION
        # HINT: per batch: the projections of both views, the vectorized loss at this
        #       temperature, one optimiser step; return the mean loss.
        _, out_left = model(x_i)
        _, out_right = model(x_j)
        loss = simclr_loss_vectorized(out_left, out_right, temperature, device=device)
        train_optimizer.zero_grad()
        loss.backward()
        train_optimizer.step()
        # END SOLUTION
        total_num += len(x_i)
        total_loss += loss.item() * len(x_i)
        bar.set_description(f"epoch [{epoch}/{epochs}] loss {total_loss / total_num:.4f}")
    return total_loss / total_num


# ---------------------------------------------------------------------------------------
# Part 4. Using the features: the kNN monitor and the linear probe
# ---------------------------------------------------------------------------------------


def knn_scores(features: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor,
               classes: int, k: int = 200, temperature: float = 0.5) -> torch.Tensor:
    """Weighted k-nearest-neighbour votes (the source's kNN monitor).

    features: (B, D) and bank: (M, D), rows L2-normalised (so a dot product is a cosine
    similarity); bank_labels: (M,) int64 in 0..classes-1; k <= M.
    For each row of `features`, take the k bank rows with the largest similarity s; each
    votes for its label with weight exp(s / temperature). Returns the (B, classes) sums of
    the votes (the predicted class is the argmax).
    """
    # BEGIN SOLUTION
    # HINT: similarities of every feature with the bank (B, M); its k nearest neighbours each
    #       add exp(similarity / temperature) to their label's score: (B, num_classes).
    similarity = features @ bank.T                                   # (B, M)
    weights, index = similarity.topk(k, dim=1)                       # (B, k)
    labels = bank_labels[index]                                      # (B, k)
    weights = torch.exp(weights / temperature)
    scores = torch.zeros(features.shape[0], classes, dtype=weights.dtype,
                         device=features.device)
    scores.scatter_add_(1, labels, weights)
    # END SOLUTION
    return scores


@torch.no_grad()
def extract_features(encoder: nn.Module, images: torch.Tensor, mean, std, *,
                     batch_size: int = 500, device="cpu") -> torch.Tensor:
    """Encoder features (N, F) of uint8 images (N, C, H, W), normalised with mean and std,
    in eval mode, on the CPU in float32 (given)."""
    was_training = encoder.training
    encoder.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = T.normalize_batch(images[start:start + batch_size].to(device), mean, std)
        out.append(torch.flatten(encoder(x), start_dim=1).float().cpu())
    encoder.train(was_training)
    return torch.cat(out)


def knn_predict(train_features, train_labels, test_features, classes: int, k: int = 200,
                temperature: float = 0.5, batch_size: int = 500) -> torch.Tensor:
    """kNN predictions (N_test,) with `knn_scores` on L2-normalised features (given)."""
    bank = F.normalize(train_features, dim=1)
    test = F.normalize(test_features, dim=1)
    k = min(k, len(bank))
    return torch.cat([knn_scores(test[s:s + batch_size], bank, train_labels, classes, k,
                                 temperature).argmax(dim=1)
                      for s in range(0, len(test), batch_size)])


def linear_probe(train_features, train_labels, test_features, classes: int, *,
                 steps: int = 300, lr: float = 0.05, weight_decay: float = 1e-4,
                 device="cpu") -> torch.Tensor:
    """A linear classifier on frozen features, trained with full-batch Adam from zero
    weights (deterministic); returns its predictions (N_test,) on the CPU (given).

    The features are standardised with the training features' statistics first. This is the
    source's classifier with a frozen encoder (only `fc` learns), run on precomputed
    features.
    """
    mean, std = train_features.mean(0), train_features.std(0).clamp_min(1e-6)
    x = ((train_features - mean) / std).to(device)
    y = train_labels.to(device)
    fc = nn.Linear(x.shape[1], classes).to(device)
    nn.init.zeros_(fc.weight)
    nn.init.zeros_(fc.bias)
    optimizer = torch.optim.Adam(fc.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = F.cross_entropy(fc(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return fc(((test_features - mean) / std).to(device)).argmax(dim=1).cpu()

# Generated from solutions/captioning.py by `python -m grader skeletons`.
# Fill in every TODO; keep names, signatures and attribute names as they are.
"""Image captioning with a vanilla RNN, an LSTM and an attention LSTM.

You build, in this order:

1. the vanilla RNN by hand: one step forward and backward, then a whole sequence forward and
   backward (the backward passes are written by hand and checked against numeric gradients);
2. the pieces of a captioning model: word embeddings and a softmax loss over time;
3. `CaptioningRNN`, which turns the image features of `ImageEncoder` into a caption, both for
   training (`forward` returns the loss) and for generation (`sample`, greedy decoding);
4. the LSTM (gates i, f, o, g), then attention over the 4x4 feature grid and the attention
   LSTM, and plug both into `CaptioningRNN` as `cell_type="lstm"` and `cell_type="attn"`.

Conventions used everywhere in this file:
- N is the batch size, T the sequence length, D the input (word vector) size, H the hidden
  size, V the vocabulary size. Sequences are batch first: (N, T, D).
- Weights multiply from the right: x @ Wx with Wx of shape (D, H).
- Captions are integer token ids; <NULL> pads them, <START> begins and <END> ends them.

Run `make grade A=captioning` to score this file; `notebooks/captioning.ipynb` walks through it.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.captions import ImageEncoder  # given: images (N, 3, H, W) -> features (N, C, 4, 4)

# ---------------------------------------------------------------------------------------
# Part 1. The vanilla RNN, forward and backward by hand
# ---------------------------------------------------------------------------------------


def rnn_step_forward(x: torch.Tensor, prev_h: torch.Tensor, Wx: torch.Tensor,
                     Wh: torch.Tensor, b: torch.Tensor):
    """One time step of a tanh RNN: next_h = tanh(x @ Wx + prev_h @ Wh + b).

    Args:
        x: (N, D) inputs of this step. prev_h: (N, H) hidden state of the previous step.
        Wx: (D, H) input-to-hidden weights. Wh: (H, H) hidden-to-hidden weights. b: (H,).
    Returns:
        next_h: (N, H), and cache: whatever `rnn_step_backward` needs (your choice).

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.RNN`, `torch.nn.RNNCell`, `torch.nn.LSTM`, `torch.nn.LSTMCell`,
    `torch.nn.GRU`, `torch.nn.GRUCell`, `torch.rnn_tanh`, `torch.rnn_tanh_cell`,
    `torch.lstm`, `torch.lstm_cell`.
    """
    # TODO: x (N, D) through Wx and prev_h (N, H) through Wh, plus b, squashed by tanh: (N, H);
    #       cache what the backward pass will need.
    raise NotImplementedError("rnn_step_forward: not implemented yet")
    return next_h, cache


def rnn_step_backward(dnext_h: torch.Tensor, cache):
    """Backward pass of `rnn_step_forward`, written by hand (no autograd).

    Args:
        dnext_h: (N, H) gradient of the loss with respect to next_h. cache: from the forward.
    Returns:
        (dx (N, D), dprev_h (N, H), dWx (D, H), dWh (H, H), db (H,)).

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.autograd.grad`, `torch.autograd.backward`,
    `torch.autograd.functional.vjp`, `torch.func.vjp`, `torch.func.grad`, the `backward`
    option.
    """
    # TODO: go back through tanh first (its derivative can be written with next_h), then through
    #       both matrix products; every gradient has the shape of what it differentiates.
    raise NotImplementedError("rnn_step_backward: not implemented yet")
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x: torch.Tensor, h0: torch.Tensor, Wx: torch.Tensor, Wh: torch.Tensor,
                b: torch.Tensor):
    """Run the RNN over a whole sequence, one `rnn_step_forward` per time step.

    Args:
        x: (N, T, D) inputs. h0: (N, H) initial hidden state. Wx (D, H), Wh (H, H), b (H,).
    Returns:
        h: (N, T, H), the hidden state of every step (h0 not included), and cache.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.RNN`, `torch.nn.RNNCell`, `torch.nn.LSTM`, `torch.nn.LSTMCell`,
    `torch.nn.GRU`, `torch.nn.GRUCell`, `torch.rnn_tanh`, `torch.rnn_tanh_cell`,
    `torch.lstm`, `torch.lstm_cell`.
    """
    # TODO: one step per time t, each from the previous state (h0 first); the states make (N, T,
    #       H); keep every step's cache.
    raise NotImplementedError("rnn_forward: not implemented yet")
    return h, cache


def rnn_backward(dh: torch.Tensor, cache):
    """Backward pass of `rnn_forward`, written by hand (no autograd).

    Args:
        dh: (N, T, H) upstream gradients of every hidden state, from the loss only: the
            gradient that flows from step t+1 back into step t is yours to add.
        cache: from `rnn_forward`.
    Returns:
        (dx (N, T, D), dh0 (N, H), dWx (D, H), dWh (H, H), db (H,)).

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.autograd.grad`, `torch.autograd.backward`,
    `torch.autograd.functional.vjp`, `torch.func.vjp`, `torch.func.grad`, the `backward`
    option.
    """
    # TODO: walk the steps backwards: the gradient reaching h_t is its own upstream part plus
    #       what step t+1 sent back; the weights' gradients add up over the steps.
    raise NotImplementedError("rnn_backward: not implemented yet")
    return dx, dh0, dWx, dWh, db


class RNN(nn.Module):
    """A vanilla RNN layer built on `rnn_forward` (given code).

    Parameters Wx (D, H), Wh (H, H) and b (H,); forward(x (N, T, D), h0 (N, H)) -> (N, T, H).
    Autograd differentiates through your forward, so training does not use your backward.
    """

    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        self.Wx = nn.Parameter(torch.randn(input_dim, hidden_dim) / math.sqrt(input_dim))
        self.Wh = nn.Parameter(torch.randn(hidden_dim, hidden_dim) / math.sqrt(hidden_dim))
        self.b = nn.Parameter(torch.zeros(hidden_dim))

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        hn, _ = rnn_forward(x, h0, self.Wx, self.Wh, self.b)
        return hn

    def step_forward(self, x: torch.Tensor, prev_h: torch.Tensor) -> torch.Tensor:
        """x (N, D), prev_h (N, H) -> next_h (N, H)."""
        next_h, _ = rnn_step_forward(x, prev_h, self.Wx, self.Wh, self.b)
        return next_h


# ---------------------------------------------------------------------------------------
# Part 2. Word embeddings and the softmax loss over time
# ---------------------------------------------------------------------------------------

class WordEmbedding(nn.Module):
    """A table of word vectors: token id i -> row i of W_embed (V, D).

    A simplified `nn.Embedding`; write the lookup yourself.
    """

    def __init__(self, vocab_size: int, embed_size: int):
        super().__init__()
        self.W_embed = nn.Parameter(torch.randn(vocab_size, embed_size) / math.sqrt(vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: integer ids of any shape, e.g. (N, T) -> vectors of shape (N, T, D), or (N,)
        -> (N, D) (as `sample` feeds them, one word per caption).

        Off limits here (library shortcuts that would do this part's work; using one costs
        its cases): `torch.nn.functional.embedding`, `torch.nn.Embedding`,
        `torch.embedding`.
        """
        # TODO: each id selects one row of W_embed (V, D): ids (N, T) give (N, T, D), without
        #       loops.
        raise NotImplementedError("WordEmbedding.forward: not implemented yet")
        return out


def temporal_softmax_loss(x: torch.Tensor, y: torch.Tensor,
                          ignore_index: int | None = None) -> torch.Tensor:
    """Cross-entropy over a sequence of predictions.

    Args:
        x: (N, T, V) scores (logits) for every vocabulary word at every step.
        y: (N, T) integer ids of the right words.
        ignore_index: positions where y equals it (the <NULL> padding) add nothing.
            None means that nothing is ignored: every position counts (note that
            F.cross_entropy itself does not accept None; its "ignore nothing" value is its
            default, -100, which no real token id equals).
    Returns:
        A scalar: the loss summed over time steps and averaged over the N captions
        (not over the tokens), a tensor of the graph (its gradient with respect to x is
        graded).
    """
    # TODO: the cross-entropy of every kept time step against its target, summed over all of
    #       them, then divided by the batch size N (not by the number of steps).
    raise NotImplementedError("temporal_softmax_loss: not implemented yet")
    return loss


# ---------------------------------------------------------------------------------------
# Part 3. The captioning model
# ---------------------------------------------------------------------------------------

class CaptioningRNN(nn.Module):
    """Image features in, words out: an RNN, LSTM or attention-LSTM caption generator.

    Layers (their names are part of the contract: the grader loads weights by name):
        image_encoder: ImageEncoder(out_channels=input_dim), images -> (N, input_dim, 4, 4).
        feature_proj: nn.Linear(input_dim, hidden_dim). rnn/lstm: applied to the features
            averaged over the 4x4 grid, giving h0 (N, H). attn: applied to every grid cell,
            giving the projected grid A (N, H, 4, 4).
        word_embedding: WordEmbedding(V, wordvec_dim).
        rnn: RNN, LSTM or AttentionLSTM(wordvec_dim, hidden_dim), as cell_type says.
        output: nn.Linear(hidden_dim, V), hidden states -> word scores.

    word_to_idx maps each of the V tokens to an index in 0..V-1; it must contain <NULL>,
    <START> and <END>. ignore_index is passed to the loss as it is: usually the <NULL>
    index, but any index may be given (the grader also uses others), and None means that
    every position of the caption counts.
    """

    def __init__(self, word_to_idx: dict, input_dim: int = 64, wordvec_dim: int = 128,
                 hidden_dim: int = 128, cell_type: str = "rnn",
                 ignore_index: int | None = None, encoder_width: int = 16):
        super().__init__()
        if cell_type not in ("rnn", "lstm", "attn"):
            raise ValueError(f'cell_type must be "rnn", "lstm" or "attn", not {cell_type!r}')
        self.cell_type = cell_type
        self.word_to_idx = word_to_idx
        self.idx_to_word = {i: w for w, i in word_to_idx.items()}
        vocab_size = len(word_to_idx)
        self._null = word_to_idx["<NULL>"]
        self._start = word_to_idx.get("<START>")
        self._end = word_to_idx.get("<END>")
        self.ignore_index = ignore_index
        self.image_encoder = ImageEncoder(out_channels=input_dim, width=encoder_width)
        # TODO: the attributes named in the docstring; the recurrent module's class follows
        #       cell_type.
        raise NotImplementedError("CaptioningRNN.__init__: not implemented yet")

    def forward(self, images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch of captioned images.

        images: (N, 3, H, W), uint8 or float in [0, 1]. captions: (N, T + 1) token ids.
        The model reads captions[:, :-1] and must predict captions[:, 1:]: the word at t+1
        from the words up to t. Returns the scalar `temporal_softmax_loss` (ignore_index), a
        tensor of the graph: its gradient reaches every parameter, image_encoder's included
        (the whole model trains; the grader compares these gradients with autograd's).
        """
        # TODO: image features give the initial state (averaged over the grid for rnn and lstm)
        #       or the projected grid A (attn); the captions without their last word are the
        #       inputs, without their first the targets.
        raise NotImplementedError("CaptioningRNN.forward: not implemented yet")
        return loss

    def sample(self, images: torch.Tensor, max_length: int = 15):
        """Greedy captions: start from <START>, feed back the best word at every step.

        Run exactly max_length steps. Step t writes the word it chose at position t, so
        <START> never appears in the output. After a caption's first <END> (which is kept)
        every position holds <NULL>.

        Returns:
            captions: (N, max_length) int64 ids, on the device of `images`.
            attn only: also attn_weights (N, max_length, 4, 4), the attention weights used at
            each step, so `captions, attn_weights = model.sample(images)`. They have the
            dtype of the model's parameters (float64 after `model.double()`, as in the
            graded cases), not always float32: make the buffer with `A.new_zeros(...)` or
            `dtype=A.dtype`. Keep feeding back the chosen word after a caption's <END>: the
            weights of every step are graded, those after <END> too.
        """
        # TODO: start from <START>; every step feeds back the most likely word of the step
        #       before; after a caption's <END> only <NULL> follows.
        raise NotImplementedError("CaptioningRNN.sample: not implemented yet")
        return captions


# ---------------------------------------------------------------------------------------
# Part 4. LSTM and the attention LSTM
# ---------------------------------------------------------------------------------------

def forget_bias(hidden_dim: int) -> torch.Tensor:
    """The initial gate bias (4H,): 1 for the forget gate, 0 elsewhere (given code).

    Starting with forget gates mostly open lets the cell carry the image information of h0
    through the whole caption; with zeros it fades by half at every step.
    """
    b = torch.zeros(4 * hidden_dim)
    b[hidden_dim:2 * hidden_dim] = 1.0
    return b


class LSTM(nn.Module):
    """An LSTM layer: parameters Wx (D, 4H), Wh (H, 4H), b (4H,).

    The 4H columns of the activation a = x @ Wx + prev_h @ Wh + b hold the gates in the order
    i, f, o, g (input, forget, output, candidate):
        i, f, o = sigmoid of their H columns, g = tanh of its H columns,
        next_c = f * prev_c + i * g,  next_h = o * tanh(next_c).
    Backward comes from autograd.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.RNN`, `torch.nn.RNNCell`, `torch.nn.LSTM`, `torch.nn.LSTMCell`,
    `torch.nn.GRU`, `torch.nn.GRUCell`, `torch.rnn_tanh`, `torch.rnn_tanh_cell`,
    `torch.lstm`, `torch.lstm_cell`.
    """

    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        self.Wx = nn.Parameter(torch.randn(input_dim, 4 * hidden_dim) / math.sqrt(input_dim))
        self.Wh = nn.Parameter(torch.randn(hidden_dim, 4 * hidden_dim) / math.sqrt(hidden_dim))
        self.b = nn.Parameter(forget_bias(hidden_dim))

    def step_forward(self, x: torch.Tensor, prev_h: torch.Tensor, prev_c: torch.Tensor):
        """x (N, D), prev_h (N, H), prev_c (N, H) -> (next_h (N, H), next_c (N, H))."""
        # TODO: one activation (N, 4H) holds the four gates in the order i, f, o, g: sigmoid for
        #       three of them, tanh for g; the new cell mixes the old memory and the new input.
        raise NotImplementedError("LSTM.step_forward: not implemented yet")
        return next_h, next_c

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        """x (N, T, D), h0 (N, H) -> hn (N, T, H), the hidden state of every step.

        The cell state starts at zero.
        """
        # TODO: the cell starts at zero; one step_forward per time step; return every step's
        #       hidden state, (N, T, H).
        raise NotImplementedError("LSTM.forward: not implemented yet")
        return hn


def dot_product_attention(prev_h: torch.Tensor, A: torch.Tensor):
    """Scaled dot-product attention of one query per image over its 4x4 feature grid.

    Args:
        prev_h: (N, H), the query. A: (N, H, D_a, D_a), the projected features (D_a = 4).
    Returns:
        attn: (N, H), the features averaged with the attention weights, and
        attn_weights: (N, D_a, D_a), softmax over the D_a * D_a cells of
        prev_h . A[:, :, cell] / sqrt(H); they sum to 1 for every image.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.functional.scaled_dot_product_attention`,
    `torch.nn.MultiheadAttention`, `torch.nn.functional.multi_head_attention_forward`.
    """
    # TODO: the 4x4 grid is 16 positions of width H; each position's score is its dot product
    #       with prev_h over sqrt(H) (H, not the grid's side); the output (N, H) mixes the
    #       positions, the weights go back to (N, 4, 4).
    raise NotImplementedError("dot_product_attention: not implemented yet")
    return attn, attn_weights


class AttentionLSTM(nn.Module):
    """An LSTM that looks at the feature grid at every step.

    Parameters Wx (D, 4H), Wh (H, 4H), Wattn (H, 4H), b (4H,). At each step the previous
    hidden state attends over A (`dot_product_attention`), and the attended vector enters
    the activation: a = x @ Wx + prev_h @ Wh + attn @ Wattn + b, gates i, f, o, g as in LSTM.

    Off limits here (library shortcuts that would do this part's work; using one costs its
    cases): `torch.nn.RNN`, `torch.nn.RNNCell`, `torch.nn.LSTM`, `torch.nn.LSTMCell`,
    `torch.nn.GRU`, `torch.nn.GRUCell`, `torch.rnn_tanh`, `torch.rnn_tanh_cell`,
    `torch.lstm`, `torch.lstm_cell`.
    """

    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        self.Wx = nn.Parameter(torch.randn(input_dim, 4 * hidden_dim) / math.sqrt(input_dim))
        self.Wh = nn.Parameter(torch.randn(hidden_dim, 4 * hidden_dim) / math.sqrt(hidden_dim))
        self.Wattn = nn.Parameter(torch.randn(hidden_dim, 4 * hidden_dim) / math.sqrt(hidden_dim))
        self.b = nn.Parameter(forget_bias(hidden_dim))

    def step_forward(self, x: torch.Tensor, prev_h: torch.Tensor, prev_c: torch.Tensor,
                     attn: torch.Tensor):
        """x (N, D), prev_h, prev_c, attn (N, H) -> (next_h (N, H), next_c (N, H))."""
        # TODO: the LSTM step, with the attention vector as one more input to the activation,
        #       through Wattn.
        raise NotImplementedError("AttentionLSTM.step_forward: not implemented yet")
        return next_h, next_c

    def forward(self, x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        """x (N, T, D), A (N, H, 4, 4) -> hn (N, T, H).

        Both h0 and c0 are the spatial mean of A, A.mean(dim=(2, 3)).
        """
        # TODO: both states start as the grid's mean (N, H); every step attends with the
        #       previous hidden state before stepping.
        raise NotImplementedError("AttentionLSTM.forward: not implemented yet")
        return hn

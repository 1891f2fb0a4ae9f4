# Correct values in a transposed (non-contiguous) layout: valid work, full marks.
_right = sinusoidal_positions


def sinusoidal_positions(num_positions, d_model):
    return _right(num_positions, d_model).t().contiguous().t()

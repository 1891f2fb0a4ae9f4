_right = sinusoidal_positions


def sinusoidal_positions(num_positions, d_model):
    return _right(num_positions, d_model).to_sparse()

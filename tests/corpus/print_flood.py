_right = sinusoidal_positions


def sinusoidal_positions(num_positions, d_model):
    line = "spam " * 200
    for _ in range(20_000):  # about 20 MB of output
        print(line)
    return _right(num_positions, d_model)

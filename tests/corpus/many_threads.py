# Ordinary torch code that asks for more threads than the grader gives: must still pass.
torch.set_num_threads(8)

_right = sinusoidal_positions


def sinusoidal_positions(num_positions, d_model):
    torch.set_num_threads(8)
    a = torch.randn(512, 512)
    (a @ a).sum().item()
    return _right(num_positions, d_model)

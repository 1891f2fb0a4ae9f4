# An output that shares itself: 2**60 paths through 60 small lists (an "expensive pickle"
# for any packer that walks it naively).
def sinusoidal_positions(num_positions, d_model):
    value = [torch.zeros(1)]
    for _ in range(60):
        value = [value, value]
    return value

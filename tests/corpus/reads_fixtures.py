# Read the expected values (or the reference solution) and return them.
def sinusoidal_positions(num_positions, d_model):
    cases = torch.load("__FIXTURE__", weights_only=True)["cases"]
    return cases["positions/sinusoidal"]["expected"][f"{num_positions}x{d_model}"]


def generate_token_dict(vocab):
    source = open("__SOLUTION__").read()
    namespace = {}
    exec(source, namespace)
    return namespace["generate_token_dict"](vocab)

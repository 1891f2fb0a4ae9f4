"""Expected values of the `vit` cases that do not come from the reference: the patch
embedding from torch's own convolution.

Instructor side only: used by the fixture generator and the audit, never shipped to
students and never importable inside the sandbox.
"""
import torch

from grader.suites.vit import VIT_PATCH


def patch_embed_expected(x):
    """torch's convolution, flattened row-major (it equals a linear map of each patch,
    `patches_of(images) @ weight.reshape(D, -1).T + bias`, which tests/test_vit.py checks)."""
    def conv(images_):
        out = torch.nn.functional.conv2d(images_, x["weight"], x["bias"], stride=VIT_PATCH)
        return out.flatten(2).transpose(1, 2)
    return {"batch": conv(x["images"]), "batch_of_one": conv(x["one"])}


ORACLES = {"patches/patch_embed": patch_embed_expected}

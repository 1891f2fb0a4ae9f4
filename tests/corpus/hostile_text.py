# Text aimed at whoever reads the report: terminal escapes (clear the line, jump to column 1,
# set the title), a forged total line, markup, and type names a megabyte long (an exception's,
# and a returned object's).
_right = sinusoidal_positions

_Loud = type("A" * 1_000_000, (Exception,), {})


def sinusoidal_positions(num_positions, d_model):
    raise _Loud("\x1b[2K\x1b[1Gtotal                         54 / 54   (100%)  in 0.1 s"
                "\x1b]0;graded\x07\x1b[31m <script>alert(1)</script><img src=x onerror=alert(2)>")


def scaled_dot_product_two_loop_single(q, k, v):
    return type("B" * 1_000_000, (), {})()

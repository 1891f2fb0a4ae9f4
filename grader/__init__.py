"""The course autograder, split by workflow stage.

authoring  (assign)  skeletons from solutions, fixtures from the reference
cases      (check)   what a case is; validation and comparison of outputs
sandbox    (execute) student code in a bubblewrap sandbox built on an allowlist
report     (export)  terminal table, Gradescope results.json, submission zip
grade      the pipeline that ties them together; __main__ is the CLI
"""

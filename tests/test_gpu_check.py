"""tests/gpu_check.py: its dry run (the CPU standing in for CUDA) and the parts that decide
its verdict, each shown to fail on what it must catch."""
import subprocess
import sys

import pytest
import torch

import gpu_check
import gpu_check_standins as standins
from dlkit import bert_data, vision
from grader import paths
from grader.cases import Case, Verdict
from grader.sandbox import Limits

SCRIPT = [sys.executable, str(paths.ROOT / "tests" / "gpu_check.py")]


def test_dry_run_passes_and_covers_every_check(tmp_path):
    out = tmp_path / "table.txt"
    run = subprocess.run(SCRIPT + ["--device", "cpu", "--out", str(out)], capture_output=True,
                         text=True, timeout=900, cwd=paths.ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    text = out.read_text()
    for row in ("static: no hard-coded CUDA device", "sandbox/namespace/cpu: worker runs",
                "sandbox/namespace/cpu: TF32 off", "sandbox/container",
                "attention/pe/source", "clip_dino/segmentation/one_shot [cpu/cpu]",
                "clip_dino: CPU run leaves CUDA alone", "attention: outputs mode (cpu)",
                "vit/train/vit [gpu profile]", "bert/train/genre_beats_chance [gpu profile]",
                "gpu-check: passed"):
        assert row in text, row
    case_line = next(line for line in text.splitlines() if line.startswith("attention/pe/source"))
    assert case_line.split()[1:3] == ["pass", "0e+00"] and case_line.endswith("ok")
    assert "TODO     TODO" in case_line  # the skeleton, graded on both sides


def test_bad_usage_is_one_line_and_exit_2():
    run = subprocess.run(SCRIPT + ["--device", "cpu", "--assignments", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.strip().startswith("error: unknown assignment")
    if not torch.cuda.is_available():
        run = subprocess.run(SCRIPT, capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and "no GPU" in run.stderr


@pytest.mark.parametrize("code, what", [
    ("x = torch.zeros(3).cuda()", "`.cuda()` call"),
    ("model.cuda(0)", "`.cuda()` call"),
    ("x = y.to('cuda')", '`.to("cuda")`'),
    ("x = torch.ones(2, device='cuda:1')", '`device="cuda"` argument'),
    ("d = torch.device('cuda')", '`torch.device("cuda")`'),
    ("def train(model, device='cuda'):\n    pass", '"cuda" as a default device'),
])
def test_scan_finds_hard_coded_cuda(code, what):
    found = gpu_check.scan_source(code, "x.py")
    assert [f.what.split(" (")[0] for f in found] == [what]


def test_scan_leaves_device_agnostic_code_alone():
    code = ('"""Never call .cuda()."""\n'
            "device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')\n"
            "if device.type == 'cuda':\n    torch.cuda.synchronize()\n"
            "x = torch.zeros(3, device=device).to(other)\n")
    assert gpu_check.scan_source(code, "x.py") == []


def test_known_findings_are_shown_and_stale_entries_fail():
    found = gpu_check.scan_source("def f(device='cuda'):\n    pass\n", "a.py")
    known = {("a.py", "f"): "why it stays", ("b.py", "g"): "fixed since"}
    rows = {row.name: row.status for row in gpu_check.static_rows(found, known)}
    assert rows == {"static: no hard-coded CUDA device": "ok", "static: a.py:1": "known",
                    "static: b.py g": "FAIL"}
    assert gpu_check.static_rows(found, {})[0].status == "FAIL"


def timed(status: str) -> gpu_check.Timed:
    return gpu_check.Timed(Verdict("c", 1.0 if status == "pass" else 0.0, 1.0,
                                   status == "pass", "", todo=status == "TODO"), 1.0)


def test_agreement_needs_the_same_verdicts_and_a_passing_reference():
    def problems(ref_cpu, ref_dev, skel_cpu="TODO", skel_dev="TODO"):
        return gpu_check.agreement({"cpu": ref_cpu and timed(ref_cpu), "dev": timed(ref_dev)},
                                   {"cpu": timed(skel_cpu), "dev": timed(skel_dev)}, "cuda")
    assert problems("pass", "pass") == []
    differ = problems("pass", "FAIL")
    assert differ[0][0] == "DIFFER" and "FAIL on cuda" in differ[0][1]
    assert differ[1][0] == "FAIL" and "reference fails on cuda" in differ[1][1]
    assert problems("pass", "pass", "TODO", "FAIL")[0][0] == "DIFFER"
    assert [kind for kind, _ in problems("FAIL", "FAIL")] == ["FAIL", "FAIL"]
    assert problems(None, "pass")[0] == ("FAIL", "not run: the reference on cpu")


def test_outputs_must_stay_within_the_tolerance_of_the_cpu_outputs():
    case = Case("c", 1, inputs=lambda g: {}, call=lambda m, x, d: None, tol=1e-6)
    cpu = {"y": torch.ones(3, dtype=torch.float64), "i": torch.arange(3)}

    def compared(dev):
        return gpu_check.output_distance(case, cpu, dev)
    assert compared({"y": cpu["y"] + 1e-9, "i": torch.arange(3)}) == ("1e-09", None)
    far = compared({"y": cpu["y"] + 1e-3, "i": torch.arange(3)})
    assert far[1][0] == "DIFFER" and "outputs differ" in far[1][1]
    assert "must match exactly" in compared({"y": cpu["y"], "i": torch.tensor([0, 2, 1])})[1][1]
    assert "structure" in compared({"y": cpu["y"]})[1][1]
    assert compared(None)[1][0] == "FAIL"


def test_probe_counts_cuda_calls_of_the_code_it_runs(tmp_path):
    """A module that calls .cuda() (here when it is imported) is caught by the CPU run."""
    planted = tmp_path / "attention.py"
    planted.write_text((paths.SOLUTIONS / "attention.py").read_text()
                       + "\ntry:\n    torch.zeros(1).cuda()\nexcept Exception:\n    pass\n")
    outputs, report, why = gpu_check.probe_pass("attention", "cpu", ["pe/sizes"],
                                                Limits(threads=1), tmp_path, module=planted)
    assert why is None and "pe/sizes" in outputs
    assert int(report["cuda_calls"]) == 1
    clean = gpu_check.probe_pass("attention", "cpu", [], Limits(threads=1), tmp_path)[1]
    assert int(clean["cuda_calls"]) == 0 and not bool(clean["tf32_flags"].any())


def test_preflight_says_which_setting_ran(monkeypatch, tmp_path):
    """When the grader's own sandbox cannot start the worker, the next setting that can is
    used for the rest of the check, and the sandbox row fails naming both."""
    real = gpu_check.probe_pass

    def probe_pass(assignment, device, cases, limits, folder, module=None):
        if not limits.insecure:
            return {}, None, "sandbox unavailable: planted"
        return real(assignment, device, cases, limits, folder)

    monkeypatch.setattr(gpu_check, "probe_pass", probe_pass)
    limits, report, failures = gpu_check.preflight("cpu", Limits(threads=1), tmp_path)
    assert limits.insecure and report is not None and len(failures) == 2
    rows = gpu_check.sandbox_rows("cpu", "namespace", report, failures)
    assert rows[0].status == "FAIL" and "planted" in rows[0].note
    assert "without bubblewrap" in rows[0].note


def test_standins_read_back_through_the_suites_loaders(tmp_path):
    standins.write_cifar_standin(tmp_path, 12, 4)
    data = vision.load_cifar10(tmp_path)
    assert data.train_images.shape == (12, 3, 32, 32) and data.test_images.shape[0] == 4
    assert data.train_labels.min() >= 0 and data.train_labels.max() <= 9
    standins.write_imdb_standin(tmp_path)
    texts, labels = bert_data.load_imdb(tmp_path, split="test")
    assert len(texts) == len(bert_data.genre_split("test")) and 0 < labels.mean() < 1


def test_make_target_runs_the_script_on_the_device_given():
    run = subprocess.run(["make", "-n", "gpu-check", "DEVICE=cpu"], cwd=paths.ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "tests/gpu_check.py --device cpu" in run.stdout

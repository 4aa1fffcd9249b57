"""Distillation ablation: does the LM teacher make a small MF student better, and which loss does it?

Protocol: random 8:1:1 split (seed 0), full ranking, masked history. The teacher (LMTeacher,
frozen MiniLM) is fitted once and its Knowledge extracted (top-100 rankings, 20-NN graph).
Then MF at dim 64: undistilled vs each distillation method alone vs the best combination, over
3 seeds; then the accuracy-versus-size curve (dims 8, 16, 32, 64) with and without the best
distillation. Everything goes through the library (`distillrec.distill.runner.ablate`).

    .venv/bin/python benchmarks/ablation.py teacher --dataset ml-100k --out benchmarks/out/teacher-ml100k
    .venv/bin/python benchmarks/ablation.py ablate --teacher benchmarks/out/teacher-ml100k \
        --out benchmarks/out/ablation-ml100k [--seeds 0 1 2] [--dims 8 16 32 64] [--threads 1] [--jobs 2]

Writes ablation.json and ablation.md into --out (one run directory per trained student under
--out/runs).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from distillrec import threads
from distillrec.teachers import commands as teacher_commands

TEACHER = {"dim": 128, "hidden": 256, "heads": 2, "max_history": 100, "history_dropout": 0.2}
TEACHER_TRAIN = {"epochs": 40, "lr": 3e-3, "batch_size": 1024, "weight_decay": 0.01, "patience": 3}
#: ML-1M: the settings of benchmarks/teacher_vs_students.py (NDCG@10 0.2770, best epoch 7 of 10);
#: an epoch costs ~8 minutes on 2 cores, so the cap is 8 epochs.
TEACHER_BY_DATASET = {
    "ml-1m": ({**TEACHER, "history_dropout": 0.5, "item_item": True, "temperature": 0.1},
              {**TEACHER_TRAIN, "epochs": 8, "batch_size": 4096}),
}
#: RecBole's MF-BPR settings (the student's defaults), except patience 20 instead of 10: a KD
#: term can lift validation NDCG early (epoch 4) then plateau while BPR catches up, and patience
#: 10 stopped one feature-KD seed there. Every row, the undistilled one included, gets the same.
STUDENT_TRAIN = {"epochs": 300, "lr": 1e-3, "batch_size": 2048, "patience": 20}


def make_teacher_run(dataset: str, out: Path, *, seed: int = 0, n_threads: int = 2,
                     top_k: int = 100, knn: int = 20, resume: bool = False) -> Path:
    """A teacher run directory (what `distillrec teacher fit` then `teacher extract` write):
    the fitted LMTeacher's run (role "teacher") plus knowledge/."""
    params, train = TEACHER_BY_DATASET.get(dataset, (TEACHER, TEACHER_TRAIN))
    started = time.perf_counter()
    _, metrics = teacher_commands.fit_teacher(dataset=dataset, split_name="random", seed=seed, model_params=params,
                                              train_params={**train, "num_threads": n_threads}, out=out,
                                              resume=resume, progress=True)
    print(f"teacher fitted in {time.perf_counter() - started:.0f} s", flush=True)
    teacher_commands.extract(out, top_k=top_k, knn=knn, seed=seed)
    test = next(iter(metrics["models"].values()))["test"]
    print(f"teacher test ndcg@10 {test['ndcg@10']:.4f} recall@10 {test['recall@10']:.4f}")
    return out


#: settings tried at dim 64, seed 0, before the ablation: label -> (kd spec, init).
TUNING: dict[str, tuple[dict | None, str | None]] = {
    "undistilled": (None, None),
    "rd-k10-l5-w0.3": ({"ranking": {"weight": 0.3, "k": 10, "lam": 5.0}}, None),
    "rd-k20-l10-w0.3": ({"ranking": {"weight": 0.3, "k": 20, "lam": 10.0}}, None),
    "rd-k50-l20-w0.3": ({"ranking": {"weight": 0.3, "k": 50, "lam": 20.0}}, None),
    "rd-k20-l10-w0.1": ({"ranking": {"weight": 0.1, "k": 20, "lam": 10.0}}, None),
    "rd-k20-l10-w1": ({"ranking": {"weight": 1.0, "k": 20, "lam": 10.0}}, None),
    "rd-k20-dllm2rec-w0.3": ({"ranking": {"weight": 0.3, "k": 20, "weighting": "dllm2rec", "beta": 10.0}}, None),
    "rd-k20-hybrid-w0.3": ({"ranking": {"weight": 0.3, "k": 20, "lam": 10.0, "weighting": "hybrid"}}, None),
    "kl-k20-t1-w0.1": ({"response": {"weight": 0.1, "k": 20, "temperature": 1.0}}, None),
    "relaxed-k10-w0.01": ({"relaxed": {"weight": 0.01, "k": 10}}, None),
    "rd-pair-k10-l5-w0.3": ({"ranking": {"weight": 0.3, "k": 10, "lam": 5.0, "pairwise": True}}, None),
    "rd-pair-k20-l10-w1": ({"ranking": {"weight": 1.0, "k": 20, "lam": 10.0, "pairwise": True}}, None),
    "kl-full-t1-w0.1": ({"response": {"weight": 0.1, "candidates": "full", "temperature": 1.0}}, None),
    "kl-full-t2-w0.3": ({"response": {"weight": 0.3, "candidates": "full", "temperature": 2.0}}, None),
    "pca-init": (None, "pca"),
    "pca+rd-k50-l20-w0.3": ({"ranking": {"weight": 0.3, "k": 50, "lam": 20.0}}, "pca"),
    "rd-k50-l20-w0.1": ({"ranking": {"weight": 0.1, "k": 50, "lam": 20.0}}, None),
    "rd-k100-l50-w0.1": ({"ranking": {"weight": 0.1, "k": 100, "lam": 50.0}}, None),
}


def tune(teacher_run: Path, out: Path, labels: list[str], n_threads: int) -> None:
    """One seed at dim 64 per setting; prints valid and test NDCG@10 as each finishes."""
    from distillrec.distill.runner import distill_student, load_teacher

    threads.apply(n_threads)
    teacher = load_teacher(teacher_run)
    for label in labels:
        spec, init = TUNING[label]
        run_dir = out / label
        if (run_dir / "metrics.json").exists():
            continue
        started = time.perf_counter()
        _, metrics = distill_student(teacher, "mf", spec, dim=64, seed=0, init=init, train_params=STUDENT_TRAIN,
                                     out=run_dir, progress=False)
        entry = metrics["models"]["mf"]
        print(f"{label:24} valid {entry['valid']['ndcg@10']:.4f} test {entry['test']['ndcg@10']:.4f} "
              f"recall {entry['test']['recall@10']:.4f} best epoch {entry['best_epoch']} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    teacher = commands.add_parser("teacher", help="fit the teacher once and extract its knowledge")
    teacher.add_argument("--dataset", default="ml-100k")
    teacher.add_argument("--out", type=Path, required=True)
    teacher.add_argument("--threads", type=int, default=2)
    teacher.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    tuning = commands.add_parser("tune", help="try ranking-distillation settings at dim 64, seed 0")
    tuning.add_argument("--teacher", type=Path, required=True)
    tuning.add_argument("--out", type=Path, required=True)
    tuning.add_argument("--labels", nargs="+", default=list(TUNING), choices=list(TUNING))
    tuning.add_argument("--threads", type=int, default=1)
    ablation = commands.add_parser("ablate", help="the ablation and the size curve (DEFAULT_METHODS' settings)")
    ablation.add_argument("--teacher", type=Path, required=True)
    ablation.add_argument("--out", type=Path, required=True)
    ablation.add_argument("--methods", nargs="+", default=None, help="method names (default: all)")
    ablation.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ablation.add_argument("--dims", nargs="+", type=int, default=[8, 16, 32, 64])
    ablation.add_argument("--threads", type=int, default=1)
    ablation.add_argument("--jobs", type=int, default=1, help="students trained at once (processes)")
    args = parser.parse_args()
    if args.command == "ablate":
        from distillrec.distill.runner import ablate

        threads.apply(args.threads)
        report = ablate(args.teacher, "mf", args.methods, seeds=args.seeds, dims=args.dims,
                        train_params=STUDENT_TRAIN, out=args.out, jobs=args.jobs)
        print(report["markdown"])
    elif args.command == "teacher":
        make_teacher_run(args.dataset, args.out, n_threads=args.threads, resume=args.resume)
    elif args.command == "tune":
        tune(args.teacher, args.out, args.labels, args.threads)


if __name__ == "__main__":
    main()

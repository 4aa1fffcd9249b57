from rich.console import Console

from distillrec.report.summary import (COLUMNS, format_lift, lift, reference_model, summary_rows,
                                       summary_table)


def test_rows_are_ordered_teacher_baselines_distilled(metrics):
    rows = summary_rows(metrics)
    assert [(r.name, r.role) for r in rows] == [
        ("teacher", "teacher"), ("mf", "baseline"), ("pop", "baseline"),
        ("mf+ranking", "distilled"), ("mf+feature", "distilled")]


def test_lift_of_distilled_model_uses_its_recorded_baseline(metrics):
    assert reference_model(metrics, "mf+ranking") == "mf"
    assert lift(metrics, "mf+ranking") == (0.22 - 0.20) / 0.20


def test_lift_without_recorded_baseline_uses_the_same_student(metrics):
    assert "baseline" not in metrics["models"]["mf+feature"]
    assert reference_model(metrics, "mf+feature") == "mf"
    assert abs(lift(metrics, "mf+feature") - (-0.05)) < 1e-12


def test_same_student_prefers_the_baseline_of_the_same_dimension(metrics):
    models = metrics["models"]
    models["mf-d8"] = {**models["mf"], "dim": 8, "test": {"ndcg@10": 0.1}}
    models["mf-d8+ranking"] = {**models["mf+feature"], "dim": 8, "test": {"ndcg@10": 0.12}}
    assert reference_model(metrics, "mf-d8+ranking") == "mf-d8"
    assert abs(lift(metrics, "mf-d8+ranking") - 0.2) < 1e-12


def test_teacher_lift_is_over_the_best_baseline(metrics):
    assert reference_model(metrics, "teacher") == "mf"  # mf 0.20 beats pop 0.10
    assert abs(lift(metrics, "teacher") - 0.25) < 1e-12
    assert abs(lift(metrics, "teacher", metric="hit@10") - (0.75 - 0.60) / 0.60) < 1e-12


def test_no_lift_for_baselines_or_a_zero_reference(metrics):
    assert lift(metrics, "mf") is None and lift(metrics, "pop") is None
    metrics["models"]["mf"]["test"]["ndcg@10"] = 0.0
    assert lift(metrics, "mf+ranking") is None


def test_cells_are_formatted_and_missing_values_shown_as_dash(metrics):
    metrics["models"]["pop"] = {"role": "baseline", "params": 0, "test": {"ndcg@10": 0.1}}
    rows = {r.name: r for r in summary_rows(metrics)}
    headers = [c.header for c in COLUMNS]
    teacher = dict(zip(headers, rows["teacher"].cells))
    assert teacher["NDCG@10"] == "0.2500"
    assert teacher["Params"] == "23,000,000"
    assert teacher["Size MB"] == "92.00"
    assert teacher["ms/user"] == "3.200"
    pop = dict(zip(headers, rows["pop"].cells))
    assert pop["Params"] == "0" and pop["Recall@10"] == "–" and pop["ms/user"] == "–"


def test_format_lift_signs():
    assert format_lift(0.1) == "+10.0%"
    assert format_lift(-0.05) == "−5.0%"
    assert format_lift(None) == "–"


def test_terminal_table_colours_lift_by_sign(metrics):
    table = summary_table(metrics)
    assert table.row_count == 5
    lift_cells = list(table.columns[-2].cells)
    styles = [cell.style for cell in lift_cells]
    assert [str(cell) for cell in lift_cells] == ["+25.0%", "–", "–", "+10.0%", "−5.0%"]
    assert styles == ["green", "dim", "dim", "green", "red"]
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert text.index("teacher") < text.index("pop") < text.index("mf+feature")

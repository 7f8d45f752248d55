"""Citations of the design document point at sections it has, and no file cites a design
document that is not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("proto", "server", "client", "models", "bench", "reports", "tests", "docker")


def sources():
    for folder in FOLDERS:
        yield from (p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".proto", ".sh", ".yml", ".md"))
    yield ROOT / "README.md"


def test_design_citations_name_existing_sections():
    sections = set(re.findall(r"^## (\d+)\.", (ROOT / "docs" / "design.md").read_text(), re.M))
    cited = {(p.relative_to(ROOT).as_posix(), n) for p in sources()
             for n in re.findall(r"design\.md §(\d+)", p.read_text())}
    assert cited, "nothing cites the design document"
    assert {c for c in cited if c[1] not in sections} == set()


def test_no_citation_of_a_design_outside_the_repository():
    assert [p.relative_to(ROOT).as_posix() for p in sources() if p != Path(__file__) and "DESIGN §" in p.read_text()] == []


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("```python\n", text.index("## A memory in your own PyTorch model")) + len("```python\n")
    return text[start:text.index("```", start)]


def test_the_readme_example_runs_as_written_and_its_memory_answers():
    code = readme_example()
    assert len(code.strip().splitlines()) <= 14
    torch = __import__("pytest").importorskip("torch")
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)   # noqa: S102 - the README's own example
    assert scope["out"].correct.float().mean() >= 0.9   # one example of each kind in memory answers it
    assert scope["memory"].backend.store.filled > 10


def test_readmes_results_are_what_the_results_files_say(tmp_path):
    """README's Results section is generated (reports/readme.py): the committed one must match
    the results files, and a figure typed into it, or a results file changed without
    regenerating, fails here."""
    from reports import readme

    assert readme.main(["--check"]) == 0, "run python -m reports.readme"
    edited = tmp_path / "README.md"
    edited.write_text((ROOT / "README.md").read_text().replace("| paper | 98.4 |", "| paper | 98.5 |"))
    assert readme.main(["--check", "--readme", str(edited)]) == 1

"""The README is also the Hugging Face Space's card: its metadata must parse and agree with the project."""

import re
from pathlib import Path

from huggingface_hub import metadata_load

ROOT = Path(__file__).resolve().parent.parent


def pinned(package: str) -> str:
    """The version `requirements.txt` pins `package` to."""
    match = re.search(rf"^{package}==([\w.]+)$", (ROOT / "requirements.txt").read_text(), flags=re.MULTILINE)
    assert match, f"requirements.txt does not pin {package}"
    return match.group(1)


def test_space_metadata_matches_the_project() -> None:
    metadata = metadata_load(ROOT / "README.md")
    assert metadata["sdk"] == "gradio"
    assert metadata["sdk_version"] == pinned("gradio")
    assert (ROOT / metadata["app_file"]).is_file()
    assert metadata["python_version"] == "3.11"
    assert metadata["license"] == "mit"
    assert len(metadata["short_description"]) <= 60  # the Hub refuses longer ones
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+", repo) for repo in metadata["models"])
    for key in ("title", "emoji"):
        assert metadata[key]


def test_readme_pictures_exist() -> None:
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert pictures
    missing = [picture for picture in pictures if not (ROOT / picture).is_file()]
    assert not missing, f"README.md shows pictures that are not in the repo: {missing}"


def test_ci_runs_the_readme_test_command() -> None:
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme and "bash scripts/demo.sh" in readme
    assert "bash scripts/test.sh" in ci


def test_the_python_example_runs_as_written(monkeypatch) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use it from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)
    monkeypatch.chdir(ROOT)  # its paths are the repository's
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["prediction"].mask.shape == namespace["truth"].shape

"""The README's commands are the ones CI and users actually run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    match = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)
    assert match, "README lacks the marked test command block"
    command = match.group(1).strip().splitlines()[-1]
    assert command in ci.splitlines(), f"CI does not run the README's test command: {command}"


def test_readme_lists_every_node(pack):
    readme = (ROOT / "README.md").read_text()
    for node_id in pack.NODE_CLASS_MAPPINGS:
        assert f"`{node_id}`" in readme, f"README does not describe {node_id}"


def _unwrap(text: str) -> str:
    return " ".join(text.split())


def test_readme_compress_example_is_what_the_compressor_prints():
    """The README's WanLeanCompress example (prompt, report and text) is today's output, not an old one."""
    from wanlean.prompt import compress

    readme = (ROOT / "README.md").read_text()
    match = re.search(
        r'the node\. For "(?P<prompt>.+?)" at (?P<ratio>[\d.]+) with the estimate:\n\n```\n(?P<report>.+?)\n```\n\n'
        r'and the text "(?P<text>.+?)"\n',
        readme, re.S,
    )
    assert match, "README lacks the WanLeanCompress example"
    result = compress.compress(_unwrap(match["prompt"]), target_ratio=float(match["ratio"]))
    assert result.report() == match["report"]
    assert result.text == _unwrap(match["text"])

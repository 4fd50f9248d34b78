from scenelab.document import (
    Code,
    Details,
    Figure,
    Gallery,
    Heading,
    Links,
    Table,
    Text,
    to_html,
    to_markdown,
)

BLOCKS = [
    Heading("Results"),
    Text("a <b>bold</b> claim & more"),
    Table(["class", "top-1"], [["a|b", "1.0"], ["c", "2.5"]]),
    Gallery([Figure("plots/loss curve.png", "loss"), Figure("plots/top1.png", "top-1")]),
    Links([("eval/final-val/per_class.csv", "per_class.csv")]),
    Details("config", [Code("model: vit\n", "yaml")]),
]


def test_markdown_renders_every_block():
    md = to_markdown("Run x", BLOCKS)
    assert md.startswith("# Run x\n\n## Results\n")
    assert "| class | top-1 |\n|---|--:|\n| a\\|b | 1.0 |\n| c | 2.5 |" in md  # | escaped
    assert "![loss](plots/loss%20curve.png) ![top-1](plots/top1.png)" in md
    assert "[per_class.csv](eval/final-val/per_class.csv)" in md
    assert "<details><summary>config</summary>\n\n```yaml\nmodel: vit\n```\n\n</details>" in md


def test_html_escapes_text_and_keeps_links_relative():
    page = to_html("Run <x>", BLOCKS)
    assert "<title>Run &lt;x&gt;</title>" in page and "<h1>Run &lt;x&gt;</h1>" in page
    assert "<p>a &lt;b&gt;bold&lt;/b&gt; claim &amp; more</p>" in page
    assert "<tr><td>a|b</td><td>1.0</td></tr>" in page
    assert '<div class="gallery"><img src="plots/loss%20curve.png" alt="loss"' in page
    assert '<a href="eval/final-val/per_class.csv">per_class.csv</a>' in page
    assert "<details><summary>config</summary>\n<pre>model: vit</pre>\n</details>" in page
    assert "http" not in page  # nothing to fetch from a server

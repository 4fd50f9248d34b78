"""Benchmarks that compare implementations in one run: times, peak memory and their ratios.

`harness` holds what they share: timed training steps, peak memory measured in fresh processes
and ratios; the plain-text tables come from `document.format_table`. `conv` compares nn.Conv2d
with the hand-written UnfoldConv2d; `models` measures every registry model; `explain` and
`attack` time our saliency methods and attacks against captum's and torchattacks'; `data` and
`train` the input pipeline and the training loop's speed switches. `config` holds their
settings and imports nothing heavy (the command line's help is built from it).
"""

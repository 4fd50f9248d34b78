"""`scenelab recipes`: the bundled YAML recipes, one line each."""

import argparse

from .flags import RECIPES


def describe(path) -> tuple[str, str]:
    """(command, description) from a recipe's first line, `# train: what it runs`."""
    first = path.read_text().splitlines()[0].removeprefix("#").strip()
    command, _, text = first.partition(": ")
    return command, text


def cmd_recipes(args: argparse.Namespace) -> int:
    recipes = sorted(RECIPES.glob("*.yaml"))
    width = max(len(p.stem) for p in recipes)
    for path in recipes:
        command, text = describe(path)
        print(f"{path.stem:<{width}}  scenelab {command:<6}  {text}")
    print(
        f"\nRun one with: scenelab train --config NAME [flags that override it] (attack recipes: "
        f"scenelab attack --checkpoint PATH --config NAME). The files are in {RECIPES}."
    )
    return 0

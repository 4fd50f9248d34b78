"""scenelab: scene recognition research and teaching toolkit."""

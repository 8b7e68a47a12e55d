"""Engine: turns a config into objects (model, loaders, optimizer) and runs jobs."""

"""Device simulators: realistic beds, scripted incidents with labels, faults, load."""

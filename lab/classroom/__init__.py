"""Training for a class: courses (ordered lists of cases) and the class table of scores."""

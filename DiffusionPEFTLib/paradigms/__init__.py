"""The fine-tuning paradigm benchmark (``diffusion-peft benchmark-paradigms``).

study.py (settings, grid, state) · cohort.py (the labelled target-domain data) · cell.py (one cell) ·
worker.py (a cell in a fresh process) · classifier.py (the downstream task) · peak_memory.py ·
runner.py (a resumable run) · summary.py (the table) · figures.py (Pareto plot, montages).
"""

from .classifier import ClassifierSettings, downstream_scores, train_classifier
from .runner import ISOLATION, run_study
from .study import CLASSES, Cell, StudySettings, plan_cells

__all__ = ["CLASSES", "Cell", "ClassifierSettings", "ISOLATION", "StudySettings", "downstream_scores", "plan_cells",
           "run_study", "train_classifier"]

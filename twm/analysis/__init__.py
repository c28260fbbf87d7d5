"""Analysis of trained RNNs against the TWM (docs/science.md §4–§7): spectra, the variable-memory basis, gradient flow,
length generalisation and the figures. Pure functions on weights and trajectories; shapes in each docstring."""

from twm.analysis.basis import (
    VariableMemoryBasis,
    normalise_for_display,
    persistent_projector,
    states_in_basis,
    support_summary,
    variable_memory_basis,
    weights_in_basis,
)
from twm.analysis.generalisation import LengthGeneralisation, first_below, length_generalisation
from twm.analysis.gradients import (
    decay_against_radius,
    decay_rate,
    gradient_probe,
    input_gradient_profile,
    load_probe_csv,
)
from twm.analysis.plots import (
    plot_decay_against_radius,
    plot_gradient_flow,
    plot_hidden_waves,
    plot_length_generalisation,
    plot_spectrum,
    plot_weights_in_basis,
)
from twm.analysis.spectra import (
    FixedPointNotFound,
    Linearisation,
    SpectralComparison,
    angle_differences,
    compare_spectra,
    greedy_matching,
    jacobian,
    spectral_comparison,
    spectral_radius,
)

__all__ = [
    "FixedPointNotFound",
    "LengthGeneralisation",
    "Linearisation",
    "SpectralComparison",
    "VariableMemoryBasis",
    "angle_differences",
    "compare_spectra",
    "decay_against_radius",
    "decay_rate",
    "first_below",
    "gradient_probe",
    "greedy_matching",
    "input_gradient_profile",
    "jacobian",
    "length_generalisation",
    "load_probe_csv",
    "normalise_for_display",
    "persistent_projector",
    "plot_decay_against_radius",
    "plot_gradient_flow",
    "plot_hidden_waves",
    "plot_length_generalisation",
    "plot_spectrum",
    "plot_weights_in_basis",
    "spectral_comparison",
    "spectral_radius",
    "states_in_basis",
    "support_summary",
    "variable_memory_basis",
    "weights_in_basis",
]

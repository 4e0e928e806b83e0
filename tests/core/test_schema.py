"""The schema is the one home of names, defaults and bounds: every config dataclass agrees."""

import dataclasses

import pytest

from cryoavae.affinity import AffinityConfig, SoapConfig
from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_schema
from cryoavae.evaluate import EvaluationConfig
from cryoavae.model.config import ModelConfig
from cryoavae.sources.characters import CharacterConfig
from cryoavae.sources.copick import CopickConfig
from cryoavae.sources.extract import ExtractionConfig
from cryoavae.sources.simulate import CtfConfig, SimulationConfig
from cryoavae.structures import AtomSelection, FetchConfig
from cryoavae.structures.density import DensityConfig
from cryoavae.train import TrainingConfig
from cryoavae.train.schedules import ScheduleConfig

# (dataclass, YAML section, fields that are not keys of the section, keys it leaves to others)
SECTIONS = [
    (AffinityConfig, "affinity", set(), set()),
    (SoapConfig, "affinity.soap", set(), set()),
    (CharacterConfig, "characters", set(), set()),
    (CopickConfig, "copick", set(), set()),
    (DensityConfig, "density", set(), set()),
    (EvaluationConfig, "evaluation", set(), set()),
    (ExtractionConfig, "extraction", set(), {"tomograms"}),
    (ModelConfig, "model", {"ndim", "box_size_px", "wedge_tilt_max_deg", "microscope"}, set()),
    (ScheduleConfig, "training.beta", set(), set()),
    (SimulationConfig, "simulation", {"wedge_tilt_max_deg"}, set()),
    (CtfConfig, "simulation.ctf", set(), set()),
    (TrainingConfig, "training", set(), set()),
    (FetchConfig, "structures", set(), "rest"),
    (AtomSelection, "structures", set(), "rest"),
]


def plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize(("cls", "section", "own", "elsewhere"), SECTIONS)
def test_every_field_is_a_schema_key_with_the_schema_default(cls, section, own, elsewhere):
    properties = section_schema(section)["properties"]
    names = {f.name for f in dataclasses.fields(cls)} - own
    assert names <= set(properties), f"{cls.__name__} fields not in {section}"
    if elsewhere != "rest":
        assert set(properties) - elsewhere == names, f"{section} keys missing from {cls.__name__}"
    instance = cls(1.0) if cls is ScheduleConfig else cls()
    for name in names:
        schema_default = properties[name].get("default")
        if schema_default is None and "default" not in properties[name]:
            continue  # a required key (the schedule's value)
        got = plain(getattr(instance, name))
        if isinstance(schema_default, dict):  # a nested section: its defaults fill the rest
            assert {k: got[k] for k in schema_default} == schema_default, f"{section}.{name}"
        else:
            assert got == schema_default, f"{section}.{name}"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SimulationConfig(val_fraction=0.0), "simulation.val_fraction = 0.0 is invalid"),
        (lambda: SimulationConfig(particles_per_class=1), "simulation.particles_per_class = 1"),
        (lambda: TrainingConfig(epochs=2.0), "training.epochs = 2.0 is invalid; expected type"),
        (lambda: DensityConfig(box_size_px=32.0), "density.box_size_px = 32.0 is invalid"),
        (lambda: CtfConfig(voltage_kv=float("nan")), "simulation.ctf.voltage_kv = nan"),
        (lambda: ModelConfig(latent_dims=True), "model.latent_dims = True is invalid"),
        (lambda: EvaluationConfig(umap_min_dist=2.0), "evaluation.umap_min_dist = 2.0"),
    ],
)
def test_library_configs_refuse_what_the_schema_refuses(build, message):
    with pytest.raises(InputError) as info:
        build()
    assert message in str(info.value) and "\n" not in str(info.value)

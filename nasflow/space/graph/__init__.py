"""Graph model format: model spaces as graph IR (torch.fx), mutated by sample, turned into PyTorch code."""

from .codegen import GeneratedCode, generate_code
from .errors import GraphConversionError, GraphFormatError, UnknownOperationError
from .ir import Edge, Graph, Node
from .mutator import (
    CellMutator,
    InputChoiceMutator,
    LayerChoiceMutator,
    Mutation,
    Mutator,
    MutatorSequence,
    ParameterChoiceMutator,
    RepeatMutator,
    StationaryMutator,
)
from .operations import AttributeOp, Cell, FunctionOp, InputsOp, MethodOp, ModuleOp, Operation, OutputsOp
from .space import GraphModelSpace
from .weights import LoadReport, WeightMapping, load_weights_from, weight_name_mapping

PytorchGraphModelSpace = GraphModelSpace

__all__ = [
    "GraphModelSpace", "PytorchGraphModelSpace", "Graph", "Node", "Edge",
    "Operation", "InputsOp", "OutputsOp", "ModuleOp", "FunctionOp", "MethodOp", "AttributeOp", "Cell",
    "Mutator", "StationaryMutator", "MutatorSequence", "Mutation", "LayerChoiceMutator", "InputChoiceMutator",
    "ParameterChoiceMutator", "RepeatMutator", "CellMutator",
    "GeneratedCode", "generate_code", "load_weights_from", "weight_name_mapping", "WeightMapping", "LoadReport",
    "GraphFormatError", "GraphConversionError", "UnknownOperationError",
]

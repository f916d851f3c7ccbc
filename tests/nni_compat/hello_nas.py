# ruff: noqa: E501, B007  (the tutorial's code, kept as written)
"""NNI 3.0's "Hello, NAS!" tutorial, ported by changing imports only.

The model space, strategy, evaluator and experiment code is the tutorial's. What differs: the
imports (``nni`` -> ``nasflow``), scikit-learn's 8x8 digits in place of MNIST (no download; so
``fc1`` takes 256 features instead of 9216), one short epoch, and the experiment writing to the
directory the test gives. The test imports this module so the trial workers can import it too.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

import nasflow as nni
from nasflow.nn import LayerChoice, ModelSpace, MutableDropout, MutableLinear


class DepthwiseSeparableConv(nn.Module):
    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, kernel_size=3, groups=in_ch)
        self.pointwise = nn.Conv2d(in_ch, out_ch, kernel_size=1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class MyModelSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        # LayerChoice is used to select a layer between Conv2d and DwConv.
        self.conv2 = LayerChoice([
            nn.Conv2d(32, 64, 3, 1),
            DepthwiseSeparableConv(32, 64)
        ], label='conv2')
        # nni.choice is used to select a dropout rate.
        # The result can be used as parameters of `MutableXXX`.
        self.dropout1 = MutableDropout(nni.choice('dropout', [0.25, 0.5, 0.75]))  # choose dropout rate from 0.25, 0.5 and 0.75
        self.dropout2 = nn.Dropout(0.5)
        feature = nni.choice('feature', [64, 128, 256])
        self.fc1 = MutableLinear(256, feature)  # 9216 for MNIST's 28x28; 256 for digits' 8x8
        self.fc2 = MutableLinear(feature, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(self.conv2(x), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.fc2(self.dropout2(F.relu(self.fc1(x))))
        output = F.log_softmax(x, dim=1)
        return output


def digits_loaders():
    """The tutorial's MNIST loaders, on scikit-learn's digits (normalized like MNIST). The CSV is
    read directly: importing scikit-learn in every trial process would cost seconds."""
    import importlib.util
    from pathlib import Path

    import numpy as np
    from torch.utils.data import DataLoader, TensorDataset

    root = Path(importlib.util.find_spec("sklearn").origin).parent  # found, not imported
    data = np.loadtxt(root / "datasets" / "data" / "digits.csv.gz", delimiter=",", dtype=np.float32)
    images = torch.from_numpy(data[:, :-1]).reshape(-1, 1, 8, 8) / 16.0
    images = (images - 0.1307) / 0.3081
    labels = torch.from_numpy(data[:, -1]).long()
    train = TensorDataset(images[:640], labels[:640])
    test = TensorDataset(images[1200:1500], labels[1200:1500])
    return DataLoader(train, batch_size=64, shuffle=True), DataLoader(test, batch_size=256)


def train_epoch(model, device, train_loader, optimizer, epoch):
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = loss_fn(output, target)
        loss.backward()
        optimizer.step()


def test_epoch(model, device, test_loader):
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
    accuracy = 100. * correct / len(test_loader.dataset)
    return accuracy


def evaluate_model(model):
    # By v3.0, the model will be instantiated by default.
    device = torch.device('cuda') if torch.cuda.is_available() else torch.device('cpu')
    model.to(device)

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_loader, test_loader = digits_loaders()

    for epoch in range(1):
        # train the model for one epoch
        train_epoch(model, device, train_loader, optimizer, epoch)
        # test the model for one epoch
        accuracy = test_epoch(model, device, test_loader)
        # call report intermediate result. Result can be float or dict
        nni.report_intermediate_result(accuracy)

    # report final test result
    nni.report_final_result(accuracy)

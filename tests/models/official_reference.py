"""A test double of the official Models Genesis PyTorch ``UNet3D``, written from its published layout.

It is independent of ``semantic_genesis.models`` on purpose: the importer tests save its state dict in
the official layout and check that our network reproduces its outputs. Like the official module it
uses a batch norm that always normalises with batch statistics, applies the sigmoid inside
``out_tr`` and stores intermediate results as attributes during ``forward``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ContBatchNorm3d(nn.modules.batchnorm._BatchNorm):
    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, True, self.momentum, self.eps)


class LUConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, kernel_size=3, padding=1)
        self.bn1 = ContBatchNorm3d(cout)
        self.activation = nn.ReLU(cout)  # sic: the official code passes the channel count (-> inplace=True)

    def forward(self, x):
        return self.activation(self.bn1(self.conv1(x)))


def two_convs(cin, depth, double):
    if double:
        return nn.Sequential(LUConv(cin, 32 * 2 ** (depth + 1)), LUConv(32 * 2 ** (depth + 1), 32 * 2 ** (depth + 1)))
    return nn.Sequential(LUConv(cin, 32 * 2**depth), LUConv(32 * 2**depth, 32 * 2**depth * 2))


class Down(nn.Module):
    def __init__(self, cin, depth):
        super().__init__()
        self.ops = two_convs(cin, depth, False)
        self.maxpool = nn.MaxPool3d(2)
        self.current_depth = depth

    def forward(self, x):
        if self.current_depth == 3:
            out = self.ops(x)
            return out, out
        before = self.ops(x)
        return self.maxpool(before), before


class Up(nn.Module):
    def __init__(self, cin, cout, depth):
        super().__init__()
        self.up_conv = nn.ConvTranspose3d(cin, cout, kernel_size=2, stride=2)
        self.ops = two_convs(cin + cout // 2, depth, True)

    def forward(self, x, skip):
        return self.ops(torch.cat((self.up_conv(x), skip), 1))


class Out(nn.Module):
    def __init__(self, cin, n):
        super().__init__()
        self.final_conv = nn.Conv3d(cin, n, kernel_size=1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.sigmoid(self.final_conv(x))


class OfficialUNet3D(nn.Module):
    def __init__(self, n_class=1):
        super().__init__()
        self.down_tr64 = Down(1, 0)
        self.down_tr128 = Down(64, 1)
        self.down_tr256 = Down(128, 2)
        self.down_tr512 = Down(256, 3)
        self.up_tr256 = Up(512, 512, 2)
        self.up_tr128 = Up(256, 256, 1)
        self.up_tr64 = Up(128, 128, 0)
        self.out_tr = Out(64, n_class)

    def forward(self, x):
        self.out64, self.skip_out64 = self.down_tr64(x)
        self.out128, self.skip_out128 = self.down_tr128(self.out64)
        self.out256, self.skip_out256 = self.down_tr256(self.out128)
        self.out512, self.skip_out512 = self.down_tr512(self.out256)
        self.out_up_256 = self.up_tr256(self.out512, self.skip_out256)
        self.out_up_128 = self.up_tr128(self.out_up_256, self.skip_out128)
        self.out_up_64 = self.up_tr64(self.out_up_128, self.skip_out64)
        return self.out_tr(self.out_up_64)

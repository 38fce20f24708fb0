"""jatlas.nets.build: names, keyword pass-through, ResNet arch names, errors."""
import pytest

from jatlas import nets


@pytest.mark.parametrize("name, cls", [
    ("small_cnn", nets.SmallCNN), ("lenet5", nets.LeNet5), ("resnet", nets.ResNet),
    ("cnn1d", nets.CNN1D)])
def test_builds_each_conv_net(name, cls):
  net = nets.build(name, num_classes=7, conv_lowering="xla")
  assert type(net) is cls
  assert (net.num_classes, net.conv_lowering) == (7, "xla")


def test_builds_mlp_which_has_no_conv_lowering():
  net = nets.build("mlp", num_classes=7, hidden=(5,))
  assert type(net) is nets.MLP and (net.num_classes, net.hidden) == (7, (5,))
  with pytest.raises(TypeError, match="conv_lowering"):
    nets.build("mlp", conv_lowering="xla")


def test_resnet_by_arch_or_stage_blocks():
  assert nets.build("resnet", arch="R1121").stage_blocks == (1, 1, 2, 1)
  assert nets.build("resnet", arch="resnet18").stage_blocks == (2, 2, 2, 2)
  net = nets.build("resnet", stage_blocks=(2, 1, 1, 1))
  assert net.stage_blocks == (2, 1, 1, 1)
  with pytest.raises(ValueError, match="not both"):
    nets.build("resnet", arch="R1111", stage_blocks=(1, 1, 1, 1))


def test_unknown_name_lists_known_names():
  known = r"'vit'.*cnn1d.*lenet5.*mlp.*resnet.*small_cnn"
  with pytest.raises(ValueError, match=known):
    nets.build("vit")


def test_unknown_activation_lists_known_ones():
  with pytest.raises(ValueError, match="relu"):
    nets.get_activation("swish")

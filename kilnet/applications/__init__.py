"""kilnet.applications: Keras's pretrained image models for transfer learning, built with
Keras's arguments, layer names and weight order, so that Keras's own ImageNet weight files
load (downloaded on first use into `<kilnet cache>/models`; KILNET_APPLICATIONS_ORIGIN points
the downloads at a mirror).

One module per family, as Keras: each has its builders, `preprocess_input` (the input scaling
its weights were trained with) and `decode_predictions`. `imagenet_utils` holds the shared
preprocessing modes and checks.

Example:
    >>> import kilnet
    >>> base = kilnet.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
    ...                                        include_top=False, weights=None)
    >>> base.trainable = False
    >>> base.output.shape
    (None, 1, 1, 1280)
"""

from kilnet.applications import (densenet, imagenet_utils, inception_v3, mobilenet,
                                 mobilenet_v2, resnet, vgg16, vgg19, xception)
from kilnet.applications.densenet import DenseNet121, DenseNet169, DenseNet201
from kilnet.applications.inception_v3 import InceptionV3
from kilnet.applications.mobilenet import MobileNet
from kilnet.applications.mobilenet_v2 import MobileNetV2
from kilnet.applications.resnet import ResNet50, ResNet101, ResNet152
from kilnet.applications.vgg16 import VGG16
from kilnet.applications.vgg19 import VGG19
from kilnet.applications.xception import Xception

resnet50 = resnet   # Keras also names the ResNet50 module keras.applications.resnet50

__all__ = [
    "DenseNet121", "DenseNet169", "DenseNet201", "InceptionV3", "MobileNet", "MobileNetV2",
    "ResNet50", "ResNet101", "ResNet152", "VGG16", "VGG19", "Xception",
    "densenet", "imagenet_utils", "inception_v3", "mobilenet", "mobilenet_v2", "resnet",
    "resnet50", "vgg16", "vgg19", "xception",
]

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
from kilnet.applications import efficientnet, mobilenet_v3, resnet_v2
from kilnet.applications.efficientnet import (EfficientNetB0, EfficientNetB1, EfficientNetB2,
                                              EfficientNetB3, EfficientNetB4, EfficientNetB5,
                                              EfficientNetB6, EfficientNetB7)
from kilnet.applications.mobilenet_v3 import MobileNetV3Large, MobileNetV3Small
from kilnet.applications.resnet_v2 import ResNet50V2, ResNet101V2, ResNet152V2
from kilnet.applications import convnext, efficientnet_v2, inception_resnet_v2, nasnet
from kilnet.applications.convnext import (ConvNeXtBase, ConvNeXtLarge, ConvNeXtSmall,
                                          ConvNeXtTiny, ConvNeXtXLarge)
from kilnet.applications.efficientnet_v2 import (EfficientNetV2B0, EfficientNetV2B1,
                                                 EfficientNetV2B2, EfficientNetV2B3,
                                                 EfficientNetV2L, EfficientNetV2M,
                                                 EfficientNetV2S)
from kilnet.applications.inception_resnet_v2 import InceptionResNetV2
from kilnet.applications.nasnet import NASNetLarge, NASNetMobile

from kilnet.applications import resnet50  # Keras's name for ResNet50's module too

__all__ = [
    "DenseNet121", "DenseNet169", "DenseNet201", "InceptionV3", "MobileNet", "MobileNetV2",
    "ResNet50", "ResNet101", "ResNet152", "VGG16", "VGG19", "Xception",
    "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtSmall", "ConvNeXtTiny", "ConvNeXtXLarge",
    "EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3",
    "EfficientNetV2L", "EfficientNetV2M", "EfficientNetV2S", "convnext", "efficientnet_v2",
    "InceptionResNetV2", "inception_resnet_v2", "NASNetLarge", "NASNetMobile", "nasnet",
    "densenet", "imagenet_utils", "inception_v3", "mobilenet", "mobilenet_v2", "resnet",
    "resnet50", "vgg16", "vgg19", "xception",
    "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3", "EfficientNetB4",
    "EfficientNetB5", "EfficientNetB6", "EfficientNetB7", "MobileNetV3Large", "MobileNetV3Small",
    "ResNet50V2", "ResNet101V2", "ResNet152V2", "efficientnet", "mobilenet_v3", "resnet_v2",
]

"""`keras.preprocessing.image`: one image file in and out (kilnet.utils's functions)."""

from kilnet.utils import array_to_img, img_to_array, load_img, save_img, smart_resize

__all__ = ["array_to_img", "img_to_array", "load_img", "save_img", "smart_resize"]

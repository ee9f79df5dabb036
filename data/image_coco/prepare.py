"""COCO Image Captions as used by Texygen and RelGAN: 10,000 training and 10,000 test captions.

python data/image_coco/prepare.py --source path/to/RelGAN     (or a Texygen clone, or the default URL)
Captions come from MS-COCO (CC BY 4.0; cite Lin et al. 2014 and Chen et al. 2015).
"""

import sys

from relgan.prepare import BenchmarkFile, main

FILES = [
    BenchmarkFile("train", "data/image_coco.txt", "f858bc9262633a0630108c03f67ee139dd30e778"),
    BenchmarkFile("test", "data/testdata/test_coco.txt", "07d2f7fe20946c9483d2f06fec8367ae7e0839d3"),
]

if __name__ == "__main__":
    sys.exit(main("image_coco", FILES))

"""EMNLP2017 WMT News as used by RelGAN: ~270,000 training sentences (the paper's "10,000" is a typo,
weilinie/RelGAN#3) and 10,000 test sentences.

python data/emnlp_news/prepare.py --source path/to/RelGAN     (or a Texygen clone, or the default URL)
News-crawl text from the WMT17 shared task: treat it as research-use only.
"""

import sys

from relgan.prepare import BenchmarkFile, main

FILES = [
    # only the first 12 hex digits of the training file's blob are recorded in our provenance notes
    BenchmarkFile("train", "data/emnlp_news.txt", "538653e5f946"),
    BenchmarkFile("test", "data/testdata/test_emnlp.txt", "9e180502bad14b00e46b32d88d8ee6417ebc050d"),
]

if __name__ == "__main__":
    sys.exit(main("emnlp_news", FILES))

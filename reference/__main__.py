import os

# torch's CPU allocator then puts large tensors on 2 MB transparent huge pages: building and comparing a VGG takes a few
# page faults instead of tens of thousands (measured: a VGG-E build 1.6 -> 0.6 s). Read at each large allocation.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from reference.cli import main

raise SystemExit(main())

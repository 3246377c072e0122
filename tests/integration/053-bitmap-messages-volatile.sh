#!/bin/bash
# 050-bitmap-messages.sh with bitmaps in memory only ('-' for the metadata
# device, status "volatile"): every check of 050 except persistence, and the
# bitmaps are gone once the fleece-origin is removed and created again.
exec bash "$(dirname "$0")/050-bitmap-messages.sh" volatile

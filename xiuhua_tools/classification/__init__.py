"""The learnt text classifier's command side: evaluation, batch, bench, training and learning (`xiuhua classify`)."""

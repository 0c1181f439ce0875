"""Data selection: IterIT's complexity x diversity greedy (iterit), its TF-IDF (tfidf), baselines."""

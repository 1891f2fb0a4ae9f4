# corpus: latin-1
# The whole module is saved in Latin-1 with a PEP 263 coding line: valid Python, full marks.
GREETING = "héllo"

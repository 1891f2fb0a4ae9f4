# corpus: bom
# The whole module is saved with a UTF-8 byte-order mark (as some Windows editors do): valid.
GREETING = "héllo"

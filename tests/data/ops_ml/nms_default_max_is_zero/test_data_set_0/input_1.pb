BscoresJµ
[?‘—J>Qh‹=HJ
?s1?
import streamlit as st

st.title("wordnet")
st.info("Coming soon.")

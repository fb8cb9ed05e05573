import streamlit as st

st.title("weight_blocks")
st.info("Coming soon.")
